// Builds the `meshfed` command line from the command objects in commands/ (only this package
// knows yargs), runs one command, and turns failures into a message and an exit code:
// 0 success, 1 the operation failed, 2 the command line was wrong.

import type { Writable } from 'node:stream';
import yargs, { type Argv } from 'yargs';
import { errorMessage, isMeshError } from '@meshfed/core';
import { defaultApiAddress } from '@meshfed/client';
import { makeContext, type Args, type CommandSpec } from './command.js';
import { commands } from './commands/index.js';
import { Output } from './output.js';

export const version = '0.1.0';

export interface RunOptions {
  stdout?: Writable;
  stderr?: Writable;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

export async function run(argv: string[], options: RunOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const signal = options.signal ?? new AbortController().signal;
  let exitCode = 0;
  let usageError: string | undefined;

  const parser = yargs(argv)
    .scriptName('meshfed')
    .usage(
      'meshfed — multi-datacenter service-mesh federation and mesh gateway\n\nUsage: $0 <command> [options]',
    )
    .option('json', {
      type: 'boolean',
      default: false,
      describe: 'Machine-readable JSON output',
      global: true,
    })
    .option('log-level', {
      type: 'string',
      choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
      describe: 'Log level for daemons (overrides the config file)',
      global: true,
    })
    .option('http-addr', {
      type: 'string',
      default: env['MESHFED_HTTP_ADDR'] ?? defaultApiAddress,
      defaultDescription: `$MESHFED_HTTP_ADDR or ${defaultApiAddress}`,
      describe: 'HTTP API of the meshfed server to talk to',
      global: true,
    })
    .option('token', {
      type: 'string',
      default: env['MESHFED_HTTP_TOKEN'],
      defaultDescription: '$MESHFED_HTTP_TOKEN',
      describe: 'ACL token for the HTTP API (never logged)',
      global: true,
    })
    .version(version)
    .alias('version', 'v')
    .help()
    .alias('help', 'h')
    .parserConfiguration({ 'short-option-groups': false })
    .strict()
    .demandCommand(1, 'Give a command; `meshfed --help` lists them.')
    .recommendCommands()
    .completion('completion', 'Print a bash/zsh completion script (source it from your shell profile)')
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      usageError = msg;
    });

  const out = () => new Output(Boolean(parsedJson(argv)), stdout, stderr);
  for (const spec of commands) addCommand(parser, spec, (code) => (exitCode = code), out, signal, env);

  try {
    await parser.parseAsync(argv, {}, (err, _argv, output) => {
      if (output) stdout.write(`${output.trimEnd()}\n`);
      if (err && !usageError) usageError = err.message;
    });
  } catch (err) {
    stderr.write(`Error: ${errorMessage(err)}\n`);
    if (isMeshError(err) && err.code === 'MESH_ERR_UNAVAILABLE')
      stderr.write('Check --http-addr or MESHFED_HTTP_ADDR.\n');
    return 1;
  }
  if (usageError) {
    stderr.write(`${usageError}\nRun with --help for usage.\n`);
    return 2;
  }
  return exitCode;
}

function parsedJson(argv: string[]): boolean {
  return argv.includes('--json');
}

function addCommand(
  parent: Argv,
  spec: CommandSpec,
  setExit: (code: number) => void,
  out: () => Output,
  signal: AbortSignal,
  env: NodeJS.ProcessEnv,
): void {
  parent.command(
    spec.command,
    spec.describe,
    (y) => {
      for (const [name, opt] of Object.entries(spec.positional ?? {})) y.positional(name, opt);
      if (spec.options) y.options(spec.options);
      for (const [cmd, what] of spec.examples ?? []) y.example(cmd, what);
      for (const sub of spec.subcommands ?? []) addCommand(y, sub, setExit, out, signal, env);
      if (spec.subcommands?.length) y.demandCommand(1, `Give a subcommand of ${spec.command.split(' ')[0]}.`);
      return y;
    },
    spec.handler
      ? async (argv) => {
          const args = argv as unknown as Args;
          const code = await spec.handler!(args, makeContext(args, out(), signal, env));
          setExit(code ?? 0);
        }
      : undefined,
  );
}

export { commands };
export type { CommandSpec };
