/**
 * @packageDocumentation
 * The `meshfed` CLI: command objects, the yargs wiring, and table/JSON output.
 */
export { run, commands, version, type RunOptions } from './cli.js';
export { Output, renderTable, type Column } from './output.js';
export type { CommandSpec, CommandContext, Args } from './command.js';
export { renderCliReference } from './reference.js';
