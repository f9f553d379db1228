// Every meshfed command, in the order `meshfed --help` lists them. A command appears here only
// when it works.

import type { CommandSpec } from '../command.js';
import { configPrintCommand, validateCommand } from './config-file.js';

export const commands: CommandSpec[] = [
  validateCommand,
  {
    command: 'config',
    describe: 'Configuration files: print the effective configuration',
    subcommands: [configPrintCommand],
  },
];
