// The `meshfed gateway` entry: parses flags, builds the route source, the gateway, its admin
// listener and (optionally) the catalog registration, and runs until the signal aborts. The lead's
// CLI calls runGateway(); `node dist/src/main.js --listen ...` runs it standalone (bench, bootstrap).
//
// Multi-worker mode (--workers N > 1): the primary process owns the one routing table (it runs the
// route source), the admin listener and the registration; N worker processes (node:cluster) share
// the listening socket — the kernel spreads accepts across them (SCHED_NONE), so no handle passing
// per connection. The primary broadcasts every new table to every worker and merges their metrics.

import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ApiClient, defaultApiAddress } from '@meshfed/client';
import {
  MeshError,
  Registry,
  createLogger,
  mergeSnapshots,
  parseDuration,
  parseHostPort,
  renderMetrics,
  systemClock,
  type Clock,
  type HostPort,
  type Logger,
  type MetricSnapshot,
} from '@meshfed/core';
import { AdminServer, type RoutesResponse } from './admin.js';
import { CatalogRouteSource } from './catalog-route-source.js';
import { MeshGateway, defaultGatewayOptions, type MeshGatewayOptions } from './gateway.js';
import { GatewayRegistration } from './registration.js';
import { CombinedRouteSource, StaticRouteSource, type RouteSource } from './route-source.js';
import { RouteTable, type RouteSpec } from './routes.js';

export interface GatewayArgs {
  listen: HostPort;
  admin: HostPort | undefined;
  staticRoutes: string[];
  /** Server HTTP API; undefined = static routes only (no catalog, no registration). */
  httpAddr: string | undefined;
  token: string | undefined;
  datacenter: string;
  register: boolean;
  wanAddress: HostPort | undefined;
  /** Address local sidecars use; default: --listen (a wildcard listen host becomes 127.0.0.1). */
  lanAddress: HostPort | undefined;
  /** 1 = single process; 0 = one per CPU core. */
  workers: number;
  gateway: Partial<MeshGatewayOptions>;
}

const flagSpec = {
  listen: { type: 'string', default: '0.0.0.0:8443' },
  admin: { type: 'string', default: '127.0.0.1:19100' },
  'static-route': { type: 'string', multiple: true, default: [] as string[] },
  'http-addr': { type: 'string' },
  token: { type: 'string' },
  datacenter: { type: 'string', default: 'dc1' },
  register: { type: 'boolean', default: false },
  'wan-address': { type: 'string' },
  'lan-address': { type: 'string' },
  workers: { type: 'string', default: '1' },
  'hello-timeout': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'connect-timeout': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'max-connections': { type: 'string' },
  'max-connections-per-ip': { type: 'string' },
  balance: { type: 'string' },
} as const;

function duration(flag: string, value: string): number {
  const r = parseDuration(value);
  if (!r.ok || r.value < 0)
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `--${flag}: ${r.ok ? 'must not be negative' : r.reason}`, {
      details: { flag },
    });
  return r.value;
}

function count(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `--${flag}: expected a positive integer, got "${value}"`, {
      details: { flag },
    });
  return n;
}

function addr(flag: string, value: string): HostPort {
  const r = parseHostPort(value);
  if (!r.ok) throw new MeshError('MESH_ERR_CONFIG_INVALID', `--${flag}: ${r.reason}`, { details: { flag } });
  return r.value;
}

/** Parse `meshfed gateway` flags (Consul's names where Consul has one). */
export function parseGatewayArgs(argv: readonly string[]): GatewayArgs {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: flagSpec, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new MeshError('MESH_ERR_CONFIG_INVALID', (err as Error).message, { cause: err });
  }
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 0 || workers > 256)
    throw new MeshError(
      'MESH_ERR_CONFIG_INVALID',
      `--workers: expected an integer 0-256, got "${values.workers}"`,
    );
  const gateway: Partial<MeshGatewayOptions> = {};
  if (values['hello-timeout']) gateway.helloTimeoutMs = duration('hello-timeout', values['hello-timeout']);
  if (values['idle-timeout']) gateway.idleTimeoutMs = duration('idle-timeout', values['idle-timeout']);
  if (values['connect-timeout'])
    gateway.connectTimeoutMs = duration('connect-timeout', values['connect-timeout']);
  if (values['drain-timeout']) gateway.drainTimeoutMs = duration('drain-timeout', values['drain-timeout']);
  if (values['max-connections']) gateway.maxConnections = count('max-connections', values['max-connections']);
  if (values['max-connections-per-ip'])
    gateway.maxConnectionsPerIp = count('max-connections-per-ip', values['max-connections-per-ip']);
  if (values.balance !== undefined) {
    if (values.balance !== 'round_robin' && values.balance !== 'least_conn')
      throw new MeshError(
        'MESH_ERR_CONFIG_INVALID',
        `--balance: expected round_robin or least_conn, got "${values.balance}"`,
      );
    gateway.balance = values.balance;
  }
  const admin = values.admin === '' || values.admin === 'off' ? undefined : addr('admin', values.admin);
  return {
    listen: addr('listen', values.listen),
    admin,
    staticRoutes: values['static-route'],
    httpAddr: values['http-addr'],
    token: values.token,
    datacenter: values.datacenter,
    register: values.register,
    wanAddress: values['wan-address'] ? addr('wan-address', values['wan-address']) : undefined,
    lanAddress: values['lan-address'] ? addr('lan-address', values['lan-address']) : undefined,
    workers,
    gateway,
  };
}

export interface RunGatewayContext {
  logger: Logger;
  signal: AbortSignal;
  clock?: Clock;
  /** Called once listening (tests, CLI readiness output). */
  onListening?: (info: { listen: HostPort; admin: HostPort | undefined }) => void;
  /** Called when the stop signal arrives, with the drain deadline (a process entry arms a backstop). */
  onStopping?: (drainTimeoutMs: number) => void;
}

/** Run the gateway until `signal` aborts, then drain and return. */
export async function runGateway(
  input: GatewayArgs | readonly string[],
  ctx: RunGatewayContext,
): Promise<void> {
  const args = Array.isArray(input) ? parseGatewayArgs(input as string[]) : (input as GatewayArgs);
  const workers = args.workers === 0 ? availableParallelism() : args.workers;
  const clock = ctx.clock ?? systemClock;
  const logger = ctx.logger.child({ component: 'gateway', dc: args.datacenter });

  const client =
    args.httpAddr || args.register
      ? new ApiClient({ address: args.httpAddr ?? defaultApiAddress, token: args.token }, { clock })
      : undefined;
  const sources: RouteSource[] = [];
  if (args.staticRoutes.length > 0) sources.push(new StaticRouteSource(args.staticRoutes, args.datacenter));
  if (client)
    sources.push(
      new CatalogRouteSource(
        { datacenter: args.datacenter, ignoreServices: ['mesh-gateway'] },
        { client, logger },
      ),
    );
  if (sources.length === 0)
    throw new MeshError(
      'MESH_ERR_CONFIG_INVALID',
      'the gateway needs --static-route or --http-addr (catalog routes)',
    );
  const source = sources.length === 1 ? sources[0]! : new CombinedRouteSource(sources);

  const registry = new Registry();
  const gatewayOptions: Partial<MeshGatewayOptions> = {
    ...args.gateway,
    listen: args.listen,
    datacenter: args.datacenter,
  };
  let table: RouteTable = RouteTable.empty;
  let admin: AdminServer | undefined;
  let registration: GatewayRegistration | undefined;
  const stop: (() => Promise<void>)[] = [];
  try {
    if (workers <= 1) {
      const gw = new MeshGateway(gatewayOptions, { logger, clock, registry, routeSource: source });
      await gw.start();
      stop.push(() => gw.close());
      admin = args.admin
        ? new AdminServer(
            args.admin,
            {
              metrics: () => registry.render(),
              ready: () => gw.ready(),
              routes: () => routesResponse(args.datacenter, gw.routes(), gw.endpointHealth()),
            },
            { logger },
          )
        : undefined;
    } else {
      const pool = await WorkerPool.start(workers, gatewayOptions, logger);
      stop.push(() => pool.close());
      await source.start((t) => {
        table = t;
        pool.broadcast(t);
      });
      stop.push(() => source.close());
      admin = args.admin
        ? new AdminServer(
            args.admin,
            {
              metrics: async () =>
                renderMetrics(mergeSnapshots([registry.snapshot(), ...(await pool.metrics())])),
              ready: () => pool.ready(),
              routes: () => routesResponse(args.datacenter, table, []),
            },
            { logger },
          )
        : undefined;
    }
    if (admin) {
      await admin.start();
      stop.push(() => admin!.close());
    }
    if (args.register && client) {
      const wildcard = args.listen.host === '0.0.0.0' || args.listen.host === '::';
      const lan = args.lanAddress ?? (wildcard ? { host: '127.0.0.1', port: args.listen.port } : args.listen);
      registration = new GatewayRegistration(
        { lan, ...(args.wanAddress ? { wan: args.wanAddress } : {}) },
        { client, logger },
      );
      await registration.start();
      stop.push(() => registration!.close());
    }
    ctx.onListening?.({ listen: args.listen, admin: admin?.address() });
    logger.info({ workers }, 'gateway running');
    if (!ctx.signal.aborted)
      await new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }));
    logger.info('gateway stopping: draining connections');
    ctx.onStopping?.(args.gateway.drainTimeoutMs ?? defaultGatewayOptions.drainTimeoutMs);
  } finally {
    // reverse order: deregister, stop admin, drain the data path, stop the sources
    for (const fn of stop.reverse())
      await fn().catch((err: unknown) => logger.warn({ err }, 'shutdown step failed'));
    client?.close();
  }
}

function routesResponse(
  datacenter: string,
  table: RouteTable,
  endpoints: RoutesResponse['endpoints'],
): RoutesResponse {
  return { datacenter, trustDomain: table.trustDomain ?? null, routes: table.toJSON(), endpoints };
}

// --- multi-worker mode ----------------------------------------------------------------------

type ToWorker =
  | { t: 'routes'; routes: RouteSpec[]; trustDomain: string | undefined }
  | { t: 'metrics'; id: number }
  | { t: 'drain' };
type FromWorker =
  | { t: 'listening' }
  | { t: 'metrics'; id: number; snapshot: MetricSnapshot[] }
  | { t: 'ready'; ready: boolean };

class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly readyState = new Map<number, boolean>();
  private seq = 0;
  private readonly pendingMetrics = new Map<
    number,
    { got: MetricSnapshot[][]; want: number; done: (s: MetricSnapshot[][]) => void }
  >();
  private last: ToWorker | undefined;

  static async start(n: number, options: Partial<MeshGatewayOptions>, logger: Logger): Promise<WorkerPool> {
    const pool = new WorkerPool();
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({
      exec: fileURLToPath(import.meta.url),
      args: ['--meshfed-gateway-worker', JSON.stringify(options)],
      silent: false,
    });
    const started: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const w = cluster.fork();
      pool.workers.push(w);
      started.push(
        new Promise<void>((resolve, reject) => {
          w.on('message', (m: FromWorker) => {
            if (m.t === 'listening') resolve();
            else pool.onMessage(w, m);
          });
          w.once('exit', (code) => {
            reject(
              new MeshError(
                'MESH_ERR_GATEWAY_LISTEN',
                `gateway worker exited with code ${code} before listening`,
              ),
            );
            if (!pool.closing) logger.error({ worker: w.id, code }, 'gateway worker exited');
          });
        }),
      );
    }
    await Promise.all(started).catch(async (err: unknown) => {
      await pool.close();
      throw err;
    });
    return pool;
  }

  private closing = false;

  private onMessage(w: Worker, m: FromWorker): void {
    if (m.t === 'ready') this.readyState.set(w.id, m.ready);
    if (m.t === 'metrics') {
      const p = this.pendingMetrics.get(m.id);
      if (!p) return;
      p.got.push(m.snapshot);
      if (p.got.length === p.want) {
        this.pendingMetrics.delete(m.id);
        p.done(p.got);
      }
    }
  }

  broadcast(table: RouteTable): void {
    this.last = {
      t: 'routes',
      routes: table.routes.map((r) => ({
        match: r.match,
        class: r.class,
        datacenter: r.datacenter,
        endpoints: r.endpoints,
      })),
      trustDomain: table.trustDomain,
    };
    for (const w of this.workers) if (w.isConnected()) w.send(this.last);
  }

  ready(): boolean {
    return this.workers.length > 0 && this.workers.every((w) => this.readyState.get(w.id) === true);
  }

  metrics(): Promise<MetricSnapshot[][]> {
    const live = this.workers.filter((w) => w.isConnected());
    const id = ++this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const p = this.pendingMetrics.get(id);
        this.pendingMetrics.delete(id);
        resolve(p?.got ?? []);
      }, 2000);
      this.pendingMetrics.set(id, {
        got: [],
        want: live.length,
        done: (s) => (clearTimeout(timer), resolve(s)),
      });
      for (const w of live) w.send({ t: 'metrics', id } satisfies ToWorker);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (!w.isConnected() && w.isDead()) return resolve();
            w.once('exit', () => resolve());
            if (w.isConnected()) w.send({ t: 'drain' } satisfies ToWorker);
            else w.kill();
          }),
      ),
    );
  }
}

/**
 * The drain ends connections at its deadline; if the process is still here 5 s later something is
 * stuck (a handle that never closes): exit anyway, so a supervisor's stop never hangs.
 */
function exitAfterDrainDeadline(drainTimeoutMs: number, logger: Logger): void {
  setTimeout(() => {
    logger.error({ drainTimeoutMs }, 'gateway still running 5 s after the drain deadline; exiting');
    process.exit(1);
  }, drainTimeoutMs + 5_000).unref();
}

/** Worker process body: one MeshGateway fed by the primary's tables. */
async function runWorker(optionsJson: string): Promise<void> {
  const options = JSON.parse(optionsJson) as Partial<MeshGatewayOptions>;
  const logger = createLogger({
    bindings: { component: 'gateway', ...(options.datacenter ? { dc: options.datacenter } : {}) },
  }).child({ worker: cluster.worker?.id });
  const registry = new Registry();
  const gw = new MeshGateway(options, { logger, clock: systemClock, registry });
  const send = (m: FromWorker): void => void process.send?.(m);
  process.on('message', (m: ToWorker) => {
    if (m.t === 'routes') {
      gw.setRoutes(new RouteTable(m.routes, m.trustDomain));
      send({ t: 'ready', ready: gw.ready() });
    } else if (m.t === 'metrics') send({ t: 'metrics', id: m.id, snapshot: registry.snapshot() });
    else if (m.t === 'drain') stop();
  });
  // The backstop bounds the exit if the drain itself hangs. (A worker whose primary dies is ended
  // by node:cluster itself when the IPC channel closes.)
  let stopping = false;
  function stop(): void {
    if (stopping) return;
    stopping = true;
    exitAfterDrainDeadline(options.drainTimeoutMs ?? defaultGatewayOptions.drainTimeoutMs, logger);
    void gw.close().then(() => process.exit(0));
  }
  // The primary decides when to stop; ignore terminal signals sent to the whole process group.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  await gw.start();
  send({ t: 'listening' });
}

// --- standalone entry -------------------------------------------------------------------------

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const argv = process.argv.slice(2);
  if (cluster.isWorker && argv[0] === '--meshfed-gateway-worker') {
    runWorker(argv[1] ?? '{}').catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  } else {
    const logger = createLogger();
    const controller = new AbortController();
    process.once('SIGTERM', () => controller.abort());
    process.once('SIGINT', () => controller.abort());
    const onStopping = (ms: number): void => exitAfterDrainDeadline(ms, logger);
    runGateway(argv, { logger, signal: controller.signal, onStopping }).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.fatal({ err }, 'gateway failed');
        process.exit(1);
      },
    );
  }
}
