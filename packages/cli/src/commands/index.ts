// Every meshfed command, in the order `meshfed --help` lists them. A command appears here only
// when it works.

import type { CommandSpec } from '../command.js';
import { caCommand } from './ca.js';
import { catalogCommand, servicesCommand } from './catalog.js';
import { configEntryCommands } from './config-entry.js';
import { configPrintCommand, validateCommand } from './config-file.js';
import {
  eventCommand,
  federationCommand,
  joinCommand,
  keygenCommand,
  keyringCommand,
  leaveCommand,
  membersCommand,
} from './federation.js';
import { gatewayCommand, proxyCommand, serverCommand } from './daemons.js';
import { intentionCommand } from './intention.js';

export const commands: CommandSpec[] = [
  serverCommand,
  gatewayCommand,
  proxyCommand,
  servicesCommand,
  catalogCommand,
  intentionCommand,
  {
    command: 'config',
    describe: 'Config entries in the server (write/read/list/delete) and configuration files (print)',
    subcommands: [...configEntryCommands, configPrintCommand],
  },
  caCommand,
  federationCommand,
  joinCommand,
  membersCommand,
  leaveCommand,
  keygenCommand,
  keyringCommand,
  eventCommand,
  validateCommand,
];
