// MeshGateway: the byte path. Follow a connection top to bottom in this file:
//   accept → limits → peek ClientHello → route by SNI → connect upstream (retry, ejection)
//   → replay the peeked bytes → relay both ways (backpressure, half-close) → close and count.
// It owns the listener, the live routing table and per-endpoint health. It never decrypts, never
// holds keys, never logs raw client input above debug, and never lets one bad client hurt another.

import net from 'node:net';
import {
  MeshError,
  formatHostPort,
  type Clock,
  type CounterChild,
  type GaugeChild,
  type Logger,
  type Registry,
  type Startable,
  type TimerHandle,
} from '@meshfed/core';
import { parseClientHello, type HelloError } from './client-hello.js';
import { RouteTable, type Route } from './routes.js';
import type { RouteSource } from './route-source.js';

export type BalancePolicy = 'round_robin' | 'least_conn';

export interface MeshGatewayOptions {
  /** Where to accept TLS connections; port 0 picks a free port (see address()). */
  listen: { host: string; port: number };
  /** This gateway's datacenter (log binding, metric label for static routes). */
  datacenter: string;
  helloTimeoutMs: number;
  maxHelloBytes: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  /** Endpoints tried per connection before giving up (the ClientHello is buffered, so retry is transparent). */
  connectAttempts: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  drainTimeoutMs: number;
  balance: BalancePolicy;
  /** Consecutive connect failures that eject an endpoint ... */
  ejectAfterFailures: number;
  /** ... for this long. When every endpoint of a route is ejected they are all tried anyway. */
  ejectForMs: number;
}

export const defaultGatewayOptions: MeshGatewayOptions = Object.freeze({
  listen: { host: '0.0.0.0', port: 8443 },
  datacenter: 'dc1',
  helloTimeoutMs: 10_000,
  maxHelloBytes: 16_384,
  idleTimeoutMs: 3_600_000,
  connectTimeoutMs: 5_000,
  connectAttempts: 3,
  maxConnections: 10_000,
  maxConnectionsPerIp: 1_000,
  drainTimeoutMs: 30_000,
  balance: 'round_robin',
  ejectAfterFailures: 3,
  ejectForMs: 30_000,
});

export interface MeshGatewayDeps {
  logger: Logger;
  clock: Clock;
  registry: Registry;
  routeSource?: RouteSource;
}

/** Reasons a connection is closed without being routed (bounded: a metric label). */
export type NoRouteReason =
  HelloError | 'hello_timeout' | 'empty' | 'no_sni' | 'unknown_sni' | 'no_endpoint' | 'upstream_failed';

interface EndpointState {
  key: string;
  active: number;
  failures: number;
  ejectedUntil: number;
}

interface RouteStats {
  total: CounterChild;
  active: GaugeChild;
  toUpstream: CounterChild;
  toClient: CounterChild;
  connectFailures: CounterChild;
}

type StatsRoute = Route & { stats?: RouteStats; keys?: string[] };

class Metrics {
  readonly total;
  readonly active;
  readonly bytes;
  readonly noRoute;
  readonly connectFailures;
  readonly helloErrors;
  readonly helloWait;
  readonly rejected;
  readonly ejections;
  readonly routes;
  readonly idleClosed;
  private readonly byRoute = new Map<string, RouteStats>();
  private readonly noRouteChildren = new Map<string, CounterChild>();

  constructor(r: Registry) {
    this.total = r.counter(
      'gateway_connections_total',
      'Connections routed, by route class and datacenter.',
      ['class', 'dc'],
    );
    this.active = r.gauge(
      'gateway_connections_active',
      'Connections open now, by route class and datacenter.',
      ['class', 'dc'],
    );
    this.bytes = r.counter(
      'gateway_bytes_total',
      'Bytes relayed (open connections are added at each idle sweep).',
      ['class', 'dc', 'direction'],
    );
    this.noRoute = r.counter('gateway_no_route_total', 'Connections closed without a route, by reason.', [
      'reason',
    ]);
    this.connectFailures = r.counter(
      'gateway_upstream_connect_failures_total',
      'Failed upstream connection attempts.',
      ['class', 'dc'],
    );
    this.helloErrors = r.counter(
      'gateway_client_hello_errors_total',
      'ClientHellos that could not be read, by reason.',
      ['reason'],
    );
    this.helloWait = r.histogram(
      'gateway_client_hello_wait_seconds',
      'Time from accept to a complete ClientHello.',
      [],
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 10],
    );
    this.rejected = r.counter(
      'gateway_connections_rejected_total',
      'Connections refused before reading, by reason.',
      ['reason'],
    );
    this.ejections = r.counter(
      'gateway_endpoint_ejections_total',
      'Endpoints ejected after repeated connect failures.',
    );
    this.routes = r.gauge('gateway_routes', 'Routes in the live table.');
    this.idleClosed = r.counter('gateway_idle_closed_total', 'Connections closed after the idle timeout.');
  }

  forRoute(route: StatsRoute): RouteStats {
    if (route.stats) return route.stats;
    const key = `${route.class}\u0000${route.datacenter}`;
    let s = this.byRoute.get(key);
    if (!s) {
      s = {
        total: this.total.labels(route.class, route.datacenter),
        active: this.active.labels(route.class, route.datacenter),
        toUpstream: this.bytes.labels(route.class, route.datacenter, 'to_upstream'),
        toClient: this.bytes.labels(route.class, route.datacenter, 'to_client'),
        connectFailures: this.connectFailures.labels(route.class, route.datacenter),
      };
      this.byRoute.set(key, s);
    }
    route.stats = s;
    return s;
  }

  noRouteFor(reason: NoRouteReason): CounterChild {
    let c = this.noRouteChildren.get(reason);
    if (!c) this.noRouteChildren.set(reason, (c = this.noRoute.labels(reason)));
    return c;
  }
}

export class MeshGateway implements Startable {
  private readonly opts: MeshGatewayOptions;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly metrics: Metrics;
  private readonly routeSource: RouteSource | undefined;
  private server: net.Server | undefined;
  private table: RouteTable = RouteTable.empty;
  private hasTable = false;
  private readonly endpoints = new Map<string, EndpointState>();
  private readonly perIp = new Map<string, number>();
  private readonly conns = new Set<Conn>();
  private draining = false;
  private closing: Promise<void> | undefined;
  /** Scratch for the ClientHello when it arrives in more than one chunk. */
  private readonly helloCap: number;

  constructor(options: Partial<MeshGatewayOptions>, deps: MeshGatewayDeps) {
    this.opts = { ...defaultGatewayOptions, ...options };
    this.logger = deps.logger;
    this.clock = deps.clock;
    this.metrics = new Metrics(deps.registry);
    this.routeSource = deps.routeSource;
    // Records add 5 bytes each; a real client uses one to a few. Beyond this it is hostile.
    this.helloCap = this.opts.maxHelloBytes * 2 + 1024;
    this.metrics.routes.onCollect(() => this.metrics.routes.set(this.table.size));
  }

  // --- lifecycle ---------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.routeSource) await this.routeSource.start((t) => this.setRoutes(t));
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, this.onConnection);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new MeshError(
            'MESH_ERR_GATEWAY_LISTEN',
            `gateway cannot listen on ${formatHostPort(this.opts.listen)}: ${err.message}`,
            { cause: err },
          ),
        ),
      );
      server.listen({ host: this.opts.listen.host, port: this.opts.listen.port, backlog: 4096 }, () =>
        resolve(),
      );
    });
    server.on('error', (err) => this.logger.error({ err }, 'gateway listener error'));
    // Idle detection without a timer refresh per read/write: a sweep compares each connection's
    // byte counters with the previous sweep's. A connection is closed after idleTimeoutMs to
    // idleTimeoutMs + one sweep interval of silence in both directions.
    this.sweepEvery = Math.max(10, Math.min(30_000, Math.floor(this.opts.idleTimeoutMs / 4)));
    this.sweepTimer = this.clock.setInterval(() => this.sweep(), this.sweepEvery);
    this.sweepTimer.unref();
    this.logger.info({ listen: this.address(), routes: this.table.size }, 'gateway listening');
  }

  /** Graceful drain: stop accepting, let connections finish until drainTimeoutMs, then close them. */
  close(): Promise<void> {
    this.closing ??= this.drain();
    return this.closing;
  }

  private async drain(): Promise<void> {
    this.draining = true;
    await this.routeSource
      ?.close()
      .catch((err: unknown) => this.logger.warn({ err }, 'route source close failed'));
    const server = this.server;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    // Connections still waiting for a ClientHello have no route yet: close them now (the client
    // retries elsewhere); established ones may finish until the deadline.
    for (const c of this.conns) if (!c.routed) c.destroy();
    if (this.conns.size > 0) {
      this.logger.info(
        { connections: this.conns.size, deadlineMs: this.opts.drainTimeoutMs },
        'gateway draining',
      );
      await new Promise<void>((resolve) => {
        const timer = this.clock.setTimeout(() => {
          this.logger.warn({ connections: this.conns.size }, 'drain deadline reached, closing connections');
          for (const c of this.conns) c.destroy(); // their 'close' events empty the set → onIdle
        }, this.opts.drainTimeoutMs);
        this.onIdle = () => {
          this.clock.clearTimeout(timer);
          resolve();
        };
      });
      this.onIdle = undefined;
    }
    await closed;
    this.clock.clearInterval(this.sweepTimer);
    this.logger.info('gateway closed');
  }

  private onIdle: (() => void) | undefined;
  private sweepTimer: TimerHandle | undefined;
  private sweepEvery = 0;

  private sweep(): void {
    for (const c of this.conns) {
      if (c.idleFor(this.sweepEvery) >= this.opts.idleTimeoutMs) {
        this.metrics.idleClosed.inc();
        c.destroy();
      }
    }
  }

  /** The bound listen address (after start). */
  address(): { host: string; port: number } {
    const a = this.server?.address();
    if (a && typeof a === 'object') return { host: a.address, port: a.port };
    return { ...this.opts.listen };
  }

  /** Ready when listening, not draining, and a routing table has arrived. */
  ready(): boolean {
    return this.server?.listening === true && !this.draining && this.hasTable;
  }

  get activeConnections(): number {
    return this.conns.size;
  }

  routes(): RouteTable {
    return this.table;
  }

  /** Swap the table: new connections use it at once; established ones keep their upstream. */
  setRoutes(table: RouteTable): void {
    this.table = table;
    this.hasTable = true;
    const live = new Set<string>();
    for (const r of table.routes as StatsRoute[]) {
      r.keys = r.endpoints.map(formatHostPort);
      for (const k of r.keys) live.add(k);
    }
    for (const [k, ep] of this.endpoints) if (!live.has(k) && ep.active === 0) this.endpoints.delete(k);
    this.logger.debug({ routes: table.size }, 'routing table replaced');
  }

  // --- accept ------------------------------------------------------------------------------

  private readonly onConnection = (socket: net.Socket): void => {
    if (this.draining) return this.reject(socket, 'draining');
    if (this.conns.size >= this.opts.maxConnections) return this.reject(socket, 'global_limit');
    const ip = socket.remoteAddress ?? '';
    const perIp = this.perIp.get(ip) ?? 0;
    if (perIp >= this.opts.maxConnectionsPerIp) return this.reject(socket, 'ip_limit');
    this.perIp.set(ip, perIp + 1);
    const conn = new Conn(this, socket, ip);
    this.conns.add(conn);
  };

  private reject(socket: net.Socket, reason: 'draining' | 'global_limit' | 'ip_limit'): void {
    this.metrics.rejected.labels(reason).inc();
    socket.on('error', noop);
    socket.destroy();
  }

  // --- called by Conn ----------------------------------------------------------------------

  /** @internal */ get o(): MeshGatewayOptions {
    return this.opts;
  }
  /** @internal */ get c(): Clock {
    return this.clock;
  }
  /** @internal */ get m(): Metrics {
    return this.metrics;
  }
  /** @internal */ get cap(): number {
    return this.helloCap;
  }
  /** @internal */ get log(): Logger {
    return this.logger;
  }

  /** @internal */ lookup(sni: string): StatsRoute | undefined {
    return this.table.lookup(sni);
  }

  /** @internal Pick an endpoint of `route` not yet tried by this connection. */
  pick(route: StatsRoute, tried: readonly string[]): { index: number; ep: EndpointState } | undefined {
    const keys = (route.keys ??= route.endpoints.map(formatHostPort));
    const n = keys.length;
    const now = this.clock.monotonic();
    let best = -1;
    let fallback = -1;
    for (let i = 0; i < n; i++) {
      const idx = (route.rr + i) % n;
      const key = keys[idx]!;
      if (tried.includes(key)) continue;
      const ep = this.endpoint(key);
      if (ep.ejectedUntil > now) {
        if (fallback < 0) fallback = idx;
        continue;
      }
      if (this.opts.balance === 'round_robin') {
        best = idx;
        break;
      }
      if (best < 0 || ep.active < this.endpoint(keys[best]!).active) best = idx;
    }
    if (best < 0) best = fallback; // everything ejected: try them anyway rather than refuse
    if (best < 0) return undefined;
    route.rr = (best + 1) % n;
    return { index: best, ep: this.endpoint(keys[best]!) };
  }

  private endpoint(key: string): EndpointState {
    let ep = this.endpoints.get(key);
    if (!ep) this.endpoints.set(key, (ep = { key, active: 0, failures: 0, ejectedUntil: 0 }));
    return ep;
  }

  /** @internal */ connectFailed(ep: EndpointState): void {
    ep.failures++;
    if (ep.failures >= this.opts.ejectAfterFailures && ep.ejectedUntil <= this.clock.monotonic()) {
      ep.ejectedUntil = this.clock.monotonic() + this.opts.ejectForMs;
      ep.failures = 0;
      this.metrics.ejections.inc();
      this.logger.warn({ endpoint: ep.key, forMs: this.opts.ejectForMs }, 'upstream endpoint ejected');
    }
  }

  /** @internal */ connectSucceeded(ep: EndpointState): void {
    ep.failures = 0;
    ep.ejectedUntil = 0;
  }

  /** @internal */ finished(conn: Conn): void {
    this.conns.delete(conn);
    const n = (this.perIp.get(conn.ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(conn.ip);
    else this.perIp.set(conn.ip, n);
    if (this.conns.size === 0) this.onIdle?.();
  }

  /** Endpoint health, for /routes. */
  endpointHealth(): { endpoint: string; active: number; ejected: boolean }[] {
    const now = this.clock.monotonic();
    return [...this.endpoints.values()].map((e) => ({
      endpoint: e.key,
      active: e.active,
      ejected: e.ejectedUntil > now,
    }));
  }
}

function noop(): void {}

/** One client connection, from accept to close. */
class Conn {
  private hello: Buffer | undefined; // the first chunk, or `scratch` when it came in pieces
  private scratch: Buffer | undefined;
  private helloLen = 0;
  private helloTimer: TimerHandle | undefined;
  private readonly acceptedAt: number;
  private route: StatsRoute | undefined;
  private endpoint: EndpointState | undefined;
  private upstream: net.Socket | undefined;
  private connectTimer: TimerHandle | undefined;
  private readonly tried: string[] = [];
  private pending = 1; // sockets not yet closed
  private connected = false;
  private done = false;

  constructor(
    private readonly gw: MeshGateway,
    private readonly client: net.Socket,
    readonly ip: string,
  ) {
    this.acceptedAt = gw.c.monotonic();
    client.on('data', this.onHelloData);
    client.on('error', this.onClientError);
    client.on('close', this.onClientClose);
    client.on('end', this.onEarlyEnd);
    this.helloTimer = gw.c.setTimeout(this.onHelloTimeout, gw.o.helloTimeoutMs);
  }

  destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
  }

  get routed(): boolean {
    return this.route !== undefined;
  }

  private lastBytes = -1;
  private quietMs = 0;
  private countedUp = 0;
  private countedDown = 0;
  /**
   * Called by the sweep every `interval` ms: adds the bytes moved since the last sweep to the
   * byte counters (so long-lived connections show up without per-chunk work) and returns how
   * long no byte moved either way.
   */
  idleFor(interval: number): number {
    if (!this.connected) return 0; // the hello deadline and connect timeout cover the rest
    this.countBytes();
    const bytes = this.countedUp + this.countedDown;
    if (bytes !== this.lastBytes) {
      this.lastBytes = bytes;
      this.quietMs = 0;
    } else this.quietMs += interval;
    return this.quietMs;
  }

  private countBytes(): void {
    const stats = this.route?.stats;
    if (!stats) return;
    const up = this.client.bytesRead;
    const down = this.client.bytesWritten;
    if (up !== this.countedUp) stats.toUpstream.inc(up - this.countedUp);
    if (down !== this.countedDown) stats.toClient.inc(down - this.countedDown);
    this.countedUp = up;
    this.countedDown = down;
  }

  // --- peek --------------------------------------------------------------------------------

  private readonly onHelloData = (chunk: Buffer): void => {
    let data: Buffer;
    if (this.hello === undefined) {
      this.hello = chunk;
      this.helloLen = chunk.length;
      data = chunk;
    } else {
      // Second and later pieces: copy into one scratch buffer (no quadratic concatenation).
      const total = this.helloLen + chunk.length;
      if (total > this.gw.cap) return this.noRoute('too_large', true);
      if (this.scratch === undefined) {
        this.scratch = Buffer.allocUnsafe(this.gw.cap);
        this.hello.copy(this.scratch, 0, 0, this.helloLen);
      }
      chunk.copy(this.scratch, this.helloLen);
      this.helloLen = total;
      this.hello = this.scratch;
      data = this.scratch.subarray(0, total);
    }
    const r = parseClientHello(data, this.gw.o.maxHelloBytes);
    if (r.status === 'more') {
      if (this.helloLen > this.gw.cap) this.noRoute('too_large', true);
      return;
    }
    if (r.status === 'error') return this.noRoute(r.reason, true);
    this.gw.c.clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.client.pause();
    this.client.removeListener('data', this.onHelloData);
    this.client.removeListener('end', this.onEarlyEnd);
    this.gw.m.helloWait.observe((this.gw.c.monotonic() - this.acceptedAt) / 1000);
    // Keep exactly the bytes received: they are replayed to the upstream first.
    this.hello = this.scratch ? Buffer.from(data) : data;
    this.scratch = undefined;
    if (r.sni === undefined) return this.noRoute('no_sni', false);
    const route = this.gw.lookup(r.sni);
    if (!route) {
      if (this.gw.log.isLevelEnabled('debug'))
        this.gw.log.debug({ sni: r.sni, ip: this.ip }, 'no route for SNI');
      return this.noRoute('unknown_sni', false);
    }
    if (route.endpoints.length === 0) return this.noRoute('no_endpoint', false);
    this.route = route;
    this.connect();
  };

  private readonly onHelloTimeout = (): void => {
    this.helloTimer = undefined;
    this.counted = true;
    this.gw.m.helloErrors.labels('timeout').inc();
    this.gw.m.noRouteFor('hello_timeout').inc();
    this.client.destroy();
  };

  private readonly onEarlyEnd = (): void => {
    this.client.destroy(); // counted in onClientClose: 'empty' or a truncated ('malformed') hello
  };

  private counted = false;
  private noRoute(reason: NoRouteReason, helloError: boolean): void {
    this.counted = true;
    if (helloError) this.gw.m.helloErrors.labels(reason).inc();
    this.gw.m.noRouteFor(reason).inc();
    this.client.destroy();
  }

  // --- connect -----------------------------------------------------------------------------

  private connect(): void {
    const route = this.route!;
    if (this.tried.length >= this.gw.o.connectAttempts) return this.noRoute('upstream_failed', false);
    const picked = this.gw.pick(route, this.tried);
    if (!picked) return this.noRoute('upstream_failed', false);
    const { index, ep } = picked;
    this.tried.push(ep.key);
    this.endpoint = ep;
    ep.active++;
    const target = route.endpoints[index]!;
    const up = net.connect({ host: target.host, port: target.port, noDelay: true, allowHalfOpen: true });
    this.upstream = up;
    this.pending++;
    up.once('connect', this.onUpstreamConnect);
    up.on('error', this.onUpstreamError);
    up.on('close', this.onUpstreamClose);
    this.connectTimer = this.gw.c.setTimeout(this.onConnectTimeout, this.gw.o.connectTimeoutMs);
  }

  private readonly onConnectTimeout = (): void => {
    this.connectTimer = undefined;
    this.upstream?.destroy(new Error('connect timeout'));
  };

  private readonly onUpstreamConnect = (): void => {
    this.gw.c.clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.connected = true;
    const up = this.upstream!;
    const stats = this.gw.m.forRoute(this.route!);
    stats.total.inc();
    stats.active.inc();
    this.gw.connectSucceeded(this.endpoint!);
    // --- relay: replay the peeked bytes, then move chunks both ways with backpressure -------
    // A direct relay instead of stream.pipe(): one write per chunk, pause on a full write
    // buffer and resume on the other side's 'drain'; 'end' passes on as end() (half-close).
    // A FIN that came with (or right after) the ClientHello, while we were connecting: if no
    // bytes were left buffered, net.Socket has already emitted 'end' (it reads 0 on EOF even
    // when paused), so it is forwarded here, after the replayed bytes; otherwise 'end' comes
    // after the buffered bytes once the client resumes.
    const client = this.client;
    up.write(this.hello!);
    this.hello = undefined;
    if (client.readableEnded) up.end();
    else client.on('end', this.onClientEnd);
    client.on('data', this.onClientData);
    client.on('drain', this.onClientDrain);
    up.on('data', this.onUpData);
    up.on('end', this.onUpEnd);
    up.on('drain', this.onUpDrain);
    client.resume();
  };

  private readonly onClientData = (chunk: Buffer): void => {
    if (!this.upstream!.write(chunk)) this.client.pause();
  };
  private readonly onUpDrain = (): void => {
    this.client.resume();
  };
  private readonly onClientEnd = (): void => {
    this.upstream!.end();
  };
  private readonly onUpData = (chunk: Buffer): void => {
    if (!this.client.write(chunk)) this.upstream!.pause();
  };
  private readonly onClientDrain = (): void => {
    this.upstream?.resume();
  };
  private readonly onUpEnd = (): void => {
    this.client.end();
  };

  private readonly onUpstreamError = (): void => {
    // Errors are followed by 'close'; what happens next depends on whether we were connected.
  };

  private readonly onUpstreamClose = (hadError: boolean): void => {
    this.pending--;
    const ep = this.endpoint!;
    ep.active--;
    if (!this.connected) {
      this.gw.c.clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      this.upstream = undefined;
      if (this.client.destroyed) return this.finish(); // the client left while we were connecting
      // Never connected: count, maybe eject, and try another endpoint with the buffered hello.
      this.gw.m.forRoute(this.route!).connectFailures.inc();
      this.gw.connectFailed(ep);
      return this.connect();
    }
    if (hadError) this.client.resetAndDestroy(); // reset mid-stream: pass the reset on
    this.gw.m.forRoute(this.route!).active.dec();
    this.finish();
  };

  private readonly onClientError = (): void => {
    // Followed by 'close'. A client reset resets the upstream too.
    this.upstream?.resetAndDestroy();
  };

  private readonly onClientClose = (): void => {
    this.pending--;
    this.gw.c.clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    if (!this.counted && this.route === undefined) {
      // Left (FIN or reset) before a complete ClientHello. A TCP health check sends nothing:
      // 'empty' is not a ClientHello error; a partial hello is a truncated, malformed one.
      if (this.helloLen === 0) this.gw.m.noRouteFor('empty').inc();
      else this.noRoute('malformed', true);
    }
    const route = this.route;
    if (route?.stats && this.connected) this.countBytes();
    const up = this.upstream;
    if (up && !this.connected) up.destroy(); // gave up while we were connecting
    this.finish();
  };

  private finish(): void {
    if (this.pending > 0 || this.done) return;
    this.done = true;
    this.gw.finished(this);
  }
}
