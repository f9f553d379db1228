// Commands are data: { command, describe, options, handler }. cli.ts turns them into yargs
// commands, and the CLI reference in docs/cli.md is generated from the same objects.

import type { Options, PositionalOptions } from 'yargs';
import { ApiClient, defaultApiAddress } from '@meshfed/client';
import { createLogger, type Logger, type LogLevel } from '@meshfed/core';
import type { Output } from './output.js';

export interface GlobalArgs {
  json: boolean;
  'log-level'?: LogLevel;
  'http-addr': string;
  token?: string;
}

export interface CommandContext {
  out: Output;
  /** Logger for long-running commands (daemons); short commands print through `out`. */
  logger(component: string, level?: LogLevel): Logger;
  /** Client for the server named by --http-addr / MESHFED_HTTP_ADDR, with --token / MESHFED_HTTP_TOKEN. */
  client(): ApiClient;
  /** Aborted on SIGINT/SIGTERM: long-running handlers stop when it fires. */
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
}

// Handlers receive yargs' parsed arguments; each command reads its own keys.
export type Args = GlobalArgs & Record<string, unknown>;

export interface CommandSpec {
  command: string;
  describe: string;
  positional?: Record<string, PositionalOptions>;
  options?: Record<string, Options>;
  examples?: [string, string][];
  subcommands?: CommandSpec[];
  /** Exit code (0 when void). Throwing a MeshError prints its message and exits 1. */
  handler?: (args: Args, ctx: CommandContext) => Promise<number | void>;
}

export function makeContext(
  args: Args,
  out: Output,
  signal: AbortSignal,
  env: NodeJS.ProcessEnv,
): CommandContext {
  let client: ApiClient | undefined;
  return {
    out,
    signal,
    env,
    logger: (component, level) =>
      createLogger({
        level: args['log-level'] ?? level ?? 'info',
        pretty: !args.json && process.stdout.isTTY === true,
        bindings: { component: component as never },
      }),
    client: () =>
      (client ??= new ApiClient({ address: args['http-addr'] || defaultApiAddress, token: args.token })),
  };
}
