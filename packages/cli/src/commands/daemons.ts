// The long-running commands: `meshfed server`, `meshfed gateway`, `meshfed proxy`. Each loads the
// YAML config (with MESHFED_* env vars and --set overrides), maps it to its component's options
// and runs until SIGINT/SIGTERM, then stops in reverse order.

import { formatIssues, loadConfig, type MeshfedConfig } from '@meshfed/config';
import { MeshError, type LogLevel } from '@meshfed/core';
import { formatRoutesTable, runGateway, type GatewayArgs, type RoutesResponse } from '@meshfed/gateway';
import { runProxy } from '@meshfed/proxy';
import type { Args, CommandContext, CommandSpec } from '../command.js';
import { startServerDaemon } from '../daemons/server-daemon.js';

const configOptions = {
  config: {
    type: 'string' as const,
    array: true,
    describe: 'YAML config file(s); later ones override earlier ones',
  },
  set: {
    type: 'string' as const,
    array: true,
    describe: 'Override a key: --set ports.http=8501 (repeatable)',
  },
};

export function loadDaemonConfig(args: Args, env: NodeJS.ProcessEnv): MeshfedConfig {
  const flags: Record<string, string> = {};
  for (const s of (args['set'] as string[] | undefined) ?? []) {
    const eq = s.indexOf('=');
    if (eq < 1)
      throw new MeshError(
        'MESH_ERR_CONFIG_INVALID',
        `--set ${s}: write key=value, e.g. --set ports.http=8501`,
      );
    flags[s.slice(0, eq)] = s.slice(eq + 1);
  }
  if (args['log-level']) flags['log_level'] = args['log-level'];
  const r = loadConfig({ files: (args['config'] as string[] | undefined) ?? [], env, flags });
  if (!r.ok)
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `invalid configuration:\n${formatIssues(r.issues)}`);
  return r.config;
}

function loggers(config: MeshfedConfig, ctx: CommandContext) {
  const level = config.log_level as LogLevel;
  return (component: string) =>
    ctx.logger(component, level).child({ dc: config.datacenter, node: config.node_name ?? undefined });
}

const untilAborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) =>
    signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
  );

export const serverCommand: CommandSpec = {
  command: 'server',
  describe: "Run this DC's server: catalog, CA, intentions, config entries, HTTP API, gossip, federation",
  options: configOptions,
  examples: [['meshfed server --config configs/dc1.yaml', 'run the primary of the sample federation']],
  async handler(args, ctx) {
    const config = loadDaemonConfig(args, ctx.env);
    const log = loggers(config, ctx);
    const running = await startServerDaemon(config, { logger: log, signal: ctx.signal });
    await untilAborted(ctx.signal);
    log('server').info('stopping');
    await running.close();
  },
};

/** `meshfed gateway`: the DC's mesh gateway, routes from the local server's catalog. */
export function gatewayArgs(
  config: MeshfedConfig,
  extra: { workers?: number; staticOnly?: boolean },
): GatewayArgs {
  const hp = (s: string) => {
    const i = s.lastIndexOf(':');
    return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
  };
  const g = config.gateway;
  return {
    listen: hp(g.listen),
    admin: hp(g.admin),
    staticRoutes: g.static_routes.map((r) => `${r.sni}=${r.targets.join(',')}`),
    httpAddr: extra.staticOnly ? undefined : `http://${config.client_addr}:${config.ports.http}`,
    token: config.acl.tokens.agent ?? config.acl.tokens.management,
    datacenter: config.datacenter,
    register: !extra.staticOnly && g.register,
    wanAddress: g.wan_address ? hp(g.wan_address) : undefined,
    lanAddress: g.lan_address ? hp(g.lan_address) : undefined,
    workers: extra.workers ?? g.workers,
    gateway: {
      helloTimeoutMs: g.limits.hello_timeout,
      maxHelloBytes: g.limits.max_hello_bytes,
      idleTimeoutMs: g.limits.idle_timeout,
      connectTimeoutMs: g.limits.connect_timeout,
      maxConnections: g.limits.max_connections,
      maxConnectionsPerIp: g.limits.max_connections_per_ip,
      drainTimeoutMs: g.limits.drain_timeout,
    },
  };
}

const gatewayRun: CommandSpec = {
  command: '$0',
  describe: 'Run the mesh gateway of this DC (routes by SNI, never decrypts)',
  options: {
    ...configOptions,
    workers: { type: 'number', describe: 'Worker processes sharing the listener (0: one per core)' },
    'static-only': {
      type: 'boolean',
      describe: 'Use only gateway.static_routes (no server, no registration)',
    },
  },
  async handler(args, ctx) {
    const config = loadDaemonConfig(args, ctx.env);
    const log = loggers(config, ctx);
    await runGateway(
      gatewayArgs(config, {
        ...(args['workers'] !== undefined ? { workers: args['workers'] as number } : {}),
        staticOnly: args['static-only'] === true,
      }),
      { logger: log('gateway'), signal: ctx.signal },
    );
  },
};

const gatewayRoutes: CommandSpec = {
  command: 'routes',
  describe: "Print a running gateway's live routing table",
  options: {
    ...configOptions,
    'admin-addr': {
      type: 'string',
      describe: 'Admin address of the gateway (default: gateway.admin of the config)',
    },
  },
  async handler(args, ctx) {
    const admin =
      (args['admin-addr'] as string | undefined) ??
      (args['config'] ? loadDaemonConfig(args, ctx.env).gateway.admin : '127.0.0.1:19100');
    let res: Response;
    try {
      res = await fetch(`http://${admin}/routes`, { signal: AbortSignal.timeout(5000) });
    } catch (err) {
      throw new MeshError(
        'MESH_ERR_UNAVAILABLE',
        `cannot reach the gateway admin listener at ${admin} (${(err as Error).message}); is the gateway running? pass --admin-addr`,
      );
    }
    const body = (await res.json()) as RoutesResponse;
    if (args.json) ctx.out.data(body);
    else ctx.out.line(formatRoutesTable(body).trimEnd());
  },
};

export const gatewayCommand: CommandSpec = {
  command: 'gateway',
  describe: 'The mesh gateway: run it, or show its routes',
  subcommands: [gatewayRun, gatewayRoutes],
};

export const proxyCommand: CommandSpec = {
  command: 'proxy',
  describe: 'Run the sidecar proxy of a service instance (mTLS, intentions, upstreams)',
  options: {
    ...configOptions,
    'sidecar-for': {
      type: 'string',
      demandOption: true,
      describe: 'ID of the service instance this sidecar serves',
    },
    check: { type: 'boolean', describe: 'Print the resolved upstream targets and identity, then exit' },
  },
  examples: [['meshfed proxy --config configs/dc2.yaml --sidecar-for counting-dc2', "counting's sidecar"]],
  async handler(args, ctx) {
    const config = loadDaemonConfig(args, ctx.env);
    const log = loggers(config, ctx);
    const argv = [
      '--sidecar-for',
      args['sidecar-for'] as string,
      '--http-addr',
      `http://${config.client_addr}:${config.ports.http}`,
      '--datacenter',
      config.datacenter,
      '--default-intention-policy',
      config.intentions.default_policy,
      ...(args['check'] ? ['--check'] : []),
    ];
    const token = config.acl.tokens.agent ?? config.acl.tokens.management;
    return runProxy(argv, {
      logger: log('proxy'),
      signal: ctx.signal,
      env: { MESHFED_HTTP_TOKEN: token },
      out: (t) => ctx.out.line(t.trimEnd()),
    });
  },
};
