// Logging. Packages depend on the small `Logger` interface (a subset of pino's API); the daemon
// builds one pino root with createLogger() and hands each component a child carrying `component`,
// `dc` and `node`. Secrets never reach the output: known secret fields are redacted at the root.

import { pino, type DestinationStream, type LevelWithSilent } from 'pino';
import { createRequire } from 'node:module';
import type PinoPretty from 'pino-pretty';

export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  child(bindings: Record<string, unknown>): Logger;
  isLevelEnabled(level: LogLevel): boolean;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export const logLevels: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** Every component name used in logs and metrics, in one list. */
export const componentNames = [
  'cli',
  'config',
  'server',
  'store',
  'catalog',
  'health',
  'http',
  'ca',
  'intentions',
  'config-entries',
  'gateway',
  'proxy',
  'gossip',
  'federation',
  'replication',
  'testbed',
] as const;
export type ComponentName = (typeof componentNames)[number];

/** Field paths that may carry secrets; pino replaces their values with "[redacted]". */
export const redactedPaths = [
  'token',
  '*.token',
  'secretId',
  '*.secretId',
  'SecretID',
  '*.SecretID',
  'privateKey',
  '*.privateKey',
  'PrivateKeyPEM',
  '*.PrivateKeyPEM',
  'keys',
  '*.keys',
  'encrypt',
  '*.encrypt',
  'headers["x-consul-token"]',
  'headers.authorization',
  'req.headers["x-consul-token"]',
  'req.headers.authorization',
];

export interface LoggerOptions {
  level?: LogLevel;
  /** Human-readable output; defaults to whether stderr/stdout is a TTY. */
  pretty?: boolean;
  /** Where JSON lines go; defaults to stdout. Tests pass a collecting stream. */
  destination?: DestinationStream;
  bindings?: { component?: ComponentName; dc?: string; node?: string };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level: LevelWithSilent = options.level ?? 'info';
  const base = { ...options.bindings };
  const redact = { paths: redactedPaths, censor: '[redacted]' };
  const usePretty = options.pretty ?? (options.destination === undefined && process.stdout.isTTY === true);
  if (usePretty) {
    // Loaded only for a terminal: daemons under a supervisor never pay its ~10 MB.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    const stream = pretty({
      colorize: true,
      sync: true,
      translateTime: 'HH:MM:ss.l',
      ignore: 'pid,hostname',
    });
    return pino({ level, base, redact }, stream) as unknown as Logger;
  }
  return pino(
    { level, base, redact },
    options.destination ?? pino.destination({ sync: false }),
  ) as unknown as Logger;
}

/** A logger that drops everything: for components built in tests that do not look at logs. */
export const silentLogger: Logger = createLogger({
  level: 'silent',
  destination: { write: () => undefined },
});

/** Child logger for a component: the one way components get their bindings. */
export function componentLogger(
  root: Logger,
  component: ComponentName,
  extra?: Record<string, unknown>,
): Logger {
  return root.child({ component, ...extra });
}
