// MeshServer: the DC server. Composes the store, the check runner and the HTTP API; every route of
// the Consul-compatible API is registered here, in the order of anchors §6. Owns nothing that
// belongs to the CA (taken as a narrow optional dep) or to federation (the `remote` hook).

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import {
  MeshError,
  toMeshError,
  isLoopback,
  parseSpiffeId,
  systemClock,
  type Clock,
  type Counter,
  type Histogram,
  type IntentionAction,
  type Logger,
  type Registry,
} from '@meshfed/core';
import { SqliteStore, type Store, type WatchKey, type WriteOp } from '@meshfed/store';
import type { ServerCa, IssuedLeaf } from './ca.js';
import {
  CatalogReader,
  T_CHECKS,
  T_NODES,
  T_SERVICES,
  catalogDeregisterOps,
  catalogRegisterOps,
  checkOps,
  checkStatuses,
  deregisterServiceOps,
  nodeOps,
  parseCheck,
  parseService,
  serviceOps,
  type CheckStatus,
  type CheckValue,
  type ServiceValue,
} from './catalog.js';
import { CheckRunner } from './checks.js';
import {
  T_CONFIG,
  checkRoutableProtocols,
  configKey,
  parseKind,
  validateConfigEntry,
  type ConfigKind,
} from './config-entries.js';
import {
  Router,
  blockingRead,
  defaultBlockingOptions,
  parseJson,
  readBody,
  sendError,
  tokenOf,
  type ApiRequest,
  type ApiResponse,
  type BlockingOptions,
  type Handler,
} from './http.js';
import { Intentions, T_INTENTIONS, parseEndpoint } from './intentions.js';
import { bad, obj, optStr, type Json } from './validate.js';

export interface MeshServerOptions {
  datacenter: string;
  primaryDatacenter: string;
  nodeName: string;
  /** Directory for the SQLite file (`state.db`). */
  dataDir: string;
  domain: string;
  http: {
    bindAddress: string;
    /** 0 = an ephemeral port (tests). */
    port: number;
    tls?: { certFile: string; keyFile: string };
    /** Largest request body accepted (default 1 MiB). */
    maxBodyBytes?: number;
  };
  acl: AclOptions;
  defaultIntentionPolicy: IntentionAction;
  /** Federation (server RPC) port, advertised in /v1/catalog/service/consul. */
  serverPort: number;
  advertiseAddress: string;
  /** Blocking-query limits (Consul: 5 min default, 10 min max). */
  blocking?: Partial<BlockingOptions>;
}

/**
 * Who may call the API when ACLs are enabled. The management token may do anything. The agent token
 * (what a node's own gateway and sidecars use) may read and may write the agent endpoints
 * (`/v1/agent/...`: register itself, update checks, get leaves), not intentions, config entries, the
 * CA or the federation. Reads need no token under `defaultPolicy: 'allow'` (Consul's default) and a
 * known token under `'deny'`; the CA roots are always public (they are a trust bundle, not a secret).
 */
export interface AclOptions {
  enabled: boolean;
  managementToken?: string;
  agentToken?: string;
  defaultPolicy?: 'allow' | 'deny';
}

const PUBLIC_READS = new Set(['/v1/connect/ca/roots', '/v1/agent/connect/ca/roots']);

export const defaultMeshServerOptions = {
  domain: 'consul',
  http: { bindAddress: '127.0.0.1', port: 8500 },
  acl: { enabled: false },
  defaultIntentionPolicy: 'allow',
  serverPort: 8300,
  advertiseAddress: '127.0.0.1',
} as const;

/** An API request carried to another DC's server, serialized as on the wire. */
export interface ForwardRequest {
  method: string;
  path: string;
  /** The query string with its leading `?` (or empty). */
  query: string;
  body: string | undefined;
  /** The caller's ACL token: checked by the server that answers; never logged. */
  token: string | undefined;
}

export interface ForwardResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Forwarding to other datacenters; the federation package provides it. */
export interface RemoteDatacenters {
  datacenters(): string[];
  /** `?dc=<other>` requests, answered by that DC's server. */
  forward(dc: string, req: ForwardRequest): Promise<ForwardResponse>;
  /**
   * A secondary's writes of replicated kinds (intentions, config entries, CA configuration, join
   * tokens): the primary owns them, so it answers, and replication brings the result back. A
   * secondary never writes them locally (Consul bug 6327: local writes reverted later).
   */
  forwardToPrimary?(req: ForwardRequest): Promise<ForwardResponse>;
  /** Other datacenters' mesh gateways in health-service shape, for federation-states. */
  meshGateways?(): Record<string, unknown[]>;
}

/** Writes that only the primary may make, by path prefix. */
const PRIMARY_OWNED_WRITES = [
  '/v1/connect/intentions',
  '/v1/config',
  '/v1/connect/ca/configuration',
  '/v1/connect/ca/rotate',
  '/v1/federation/token',
];

export interface MeshServerDeps {
  logger: Logger;
  clock?: Clock;
  registry?: Registry;
  /** Defaults to a SqliteStore at `<dataDir>/state.db`. */
  store?: Store;
  ca?: ServerCa;
  remote?: RemoteDatacenters;
}

const T_CA_ROOTS = 'ca_roots';
const T_CA_LEAVES = 'ca_leaves';
const SIDECAR_PORT_MIN = 21000;
const SIDECAR_PORT_MAX = 21255;

export class MeshServer {
  readonly store: Store;
  private readonly ownsStore: boolean;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly router = new Router();
  private readonly catalog: CatalogReader;
  private readonly intentions: Intentions;
  private readonly checks: CheckRunner;
  private readonly blocking: BlockingOptions;
  private readonly maxBody: number;
  private httpServer: http.Server | https.Server | undefined;
  private readonly inflight = new Set<AbortController>();
  private readonly sockets = new Set<Socket>();
  private readonly encoded = new WeakMap<object, Buffer>();
  private readonly leaves = new Map<string, IssuedLeaf>();
  private readonly readMemo = new Map<string, { index: number; body: unknown }>();
  private caUnsubscribe: (() => void) | undefined;
  private started = false;
  private closed = false;
  private readonly metrics: { requests?: Counter; duration?: Histogram };

  constructor(
    readonly options: MeshServerOptions,
    private readonly deps: MeshServerDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.logger = deps.logger;
    if (!isLoopback(options.http.bindAddress) && !options.http.tls)
      throw new MeshError(
        'MESH_ERR_SERVER_TLS_REQUIRED',
        `http.bindAddress ${options.http.bindAddress} is not a loopback address; set http.tls (certFile, keyFile) or bind to 127.0.0.1`,
      );
    if (options.acl.enabled && !options.acl.managementToken)
      throw new MeshError('MESH_ERR_CONFIG_INVALID', 'acl.enabled needs acl.managementToken');
    this.ownsStore = deps.store === undefined;
    this.store =
      deps.store ??
      new SqliteStore(
        { path: join(options.dataDir, 'state.db') },
        { logger: deps.logger, clock: this.clock },
      );
    this.catalog = new CatalogReader(this.store);
    this.intentions = new Intentions(this.store, this.clock);
    this.checks = new CheckRunner(options.nodeName, {
      store: this.store,
      clock: this.clock,
      logger: this.logger,
    });
    this.blocking = { ...defaultBlockingOptions, ...options.blocking };
    this.maxBody = options.http.maxBodyBytes ?? 1024 * 1024;
    this.metrics = deps.registry
      ? {
          requests: deps.registry.counter('meshfed_http_requests_total', 'HTTP API requests', [
            'method',
            'route',
            'code',
          ]),
          duration: deps.registry.histogram(
            'meshfed_http_request_duration_seconds',
            'HTTP API request time (non-blocking part included)',
            ['route'],
          ),
        }
      : {};
    this.routes();
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const o = this.options;
    // The server is a node of its own catalog, and `consul` is how others find its server port.
    this.store.write([
      ...nodeOps({
        ID: '',
        Node: o.nodeName,
        Address: o.advertiseAddress,
        Datacenter: o.datacenter,
        TaggedAddresses: { lan: o.advertiseAddress, wan: o.advertiseAddress },
        Meta: {},
      }),
      ...serviceOps(o.nodeName, {
        ID: 'consul',
        Service: 'consul',
        Tags: [],
        Address: o.advertiseAddress,
        TaggedAddresses: {},
        Meta: { primary_datacenter: o.primaryDatacenter },
        Port: o.serverPort,
        Kind: '',
        Weights: { Passing: 1, Warning: 1 },
        EnableTagOverride: false,
      }),
    ]);
    if (this.deps.ca) {
      const ca = this.deps.ca;
      this.mirrorRoots();
      this.caUnsubscribe = ca.onChange((what) => {
        if (what === 'roots' || what === 'intermediate') this.mirrorRoots();
      });
    }
    this.checks.start();
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.handle(req, res);
    this.httpServer = o.http.tls
      ? https.createServer(
          { cert: readFileSync(o.http.tls.certFile), key: readFileSync(o.http.tls.keyFile) },
          handler,
        )
      : http.createServer(handler);
    const srv = this.httpServer;
    // Blocking-query clients keep connections idle between rounds; Node's 5 s default would close
    // them under the client and turn the next request into a reset.
    srv.keepAliveTimeout = 65_000;
    // Track raw sockets: close() must not wait on a TLS connection that never finished its
    // handshake (closeAllConnections only knows HTTP connections).
    srv.on('connection', (sock: Socket) => {
      this.sockets.add(sock);
      sock.once('close', () => this.sockets.delete(sock));
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(o.http.port, o.http.bindAddress, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    this.logger.info({ http: this.httpAddress(), dc: o.datacenter }, 'server started');
  }

  /** Base URL of the HTTP API, e.g. http://127.0.0.1:8500. */
  httpAddress(): string {
    const a = this.httpServer?.address() as AddressInfo | null | undefined;
    if (!a) throw new MeshError('MESH_ERR_UNAVAILABLE', 'server not started');
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `${this.options.http.tls ? 'https' : 'http'}://${host}:${a.port}`;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.caUnsubscribe?.();
    this.checks.close();
    for (const ac of this.inflight) ac.abort(new Error('server closing'));
    const srv = this.httpServer;
    if (srv) {
      await new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeAllConnections();
        for (const sock of this.sockets) sock.destroy();
      });
    }
    if (this.ownsStore) this.store.close();
  }

  private mirrorRoots(): void {
    const ca = this.deps.ca;
    if (!ca?.ready()) return;
    const roots = ca.rootsResponse();
    this.store.write([{ table: T_CA_ROOTS, key: 'roots', op: 'put', value: roots }]);
  }

  // --- request handling -----------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = this.clock.monotonic();
    const ac = new AbortController();
    this.inflight.add(ac);
    res.on('close', () => {
      ac.abort(new Error('client went away'));
      this.inflight.delete(ac);
    });
    let routeName = 'unknown';
    try {
      const url = new URL(req.url ?? '/', 'http://x');
      const method = req.method ?? 'GET';
      const m = this.router.match(method, url.pathname);
      if (m === undefined) throw new MeshError('MESH_ERR_API_NOT_FOUND', `no such endpoint: ${url.pathname}`);
      if (m === 'method')
        throw new MeshError(
          'MESH_ERR_API_METHOD_NOT_ALLOWED',
          `method ${method} not allowed on ${url.pathname}`,
        );
      routeName = `/${m.route.parts.join('/')}`;
      const token = tokenOf(req.headers);
      let bodyCache: Promise<unknown> | undefined;
      const apiReq: ApiRequest = {
        method,
        path: url.pathname,
        params: m.params,
        query: url.searchParams,
        headers: req.headers,
        token,
        signal: ac.signal,
        body: () => (bodyCache ??= readBody(req, this.maxBody).then(parseJson)),
      };
      const dc = url.searchParams.get('dc');
      if (dc && dc !== this.options.datacenter) {
        await this.forward(dc, apiReq, req, res, url);
        return;
      }
      if (
        m.route.write &&
        this.options.datacenter !== this.options.primaryDatacenter &&
        this.deps.remote?.forwardToPrimary &&
        PRIMARY_OWNED_WRITES.some((p) => url.pathname === p || url.pathname.startsWith(`${p}/`))
      ) {
        const body = await readBody(req, this.maxBody);
        const out = await this.deps.remote.forwardToPrimary({
          method,
          path: url.pathname,
          query: url.search,
          body: body.length ? body.toString('utf8') : undefined,
          token,
        });
        res.writeHead(out.status, out.headers);
        res.end(out.body);
        return;
      }
      this.authorize(token, url.pathname, m.route.write === true);
      const out = await m.route.handler(apiReq);
      this.send(res, out, method);
      this.metrics.requests?.labels(method, routeName, String(out.status ?? 200)).inc();
    } catch (err) {
      sendError(res, err, this.logger);
      const status = err instanceof MeshError ? err.status : 500;
      this.metrics.requests?.labels(req.method ?? '', routeName, String(status)).inc();
    } finally {
      this.metrics.duration?.labels(routeName).observe((this.clock.monotonic() - started) / 1000);
    }
  }

  /** Would this config write (entry) or delete (undefined) leave a router/splitter on a tcp service? */
  private checkRoutable(kind: ConfigKind, name: string, entry: Json | undefined): void {
    const pendingKey = configKey(kind, name);
    const get = (key: string): Json | undefined =>
      key === pendingKey ? entry : this.store.get<Json>(T_CONFIG, key)?.value;
    // Only asked when the change is to service-defaults or proxy-defaults, so the stored routers
    // and splitters are exactly the routed services.
    const routed = (): string[] => [
      ...new Set(
        (['service-router', 'service-splitter'] as const).flatMap((k) =>
          this.store.list<Json>(T_CONFIG, { secondary: k }).map((row) => String(row.value['Name'])),
        ),
      ),
    ];
    checkRoutableProtocols({ kind, name }, get, routed);
  }

  private authorize(token: string | undefined, path: string, write: boolean): void {
    const acl = this.options.acl;
    if (!acl.enabled) return;
    if (!write && (acl.defaultPolicy !== 'deny' || PUBLIC_READS.has(path))) return;
    if (tokenIs(token, acl.managementToken)) return;
    const agentMay = !write || path.startsWith('/v1/agent/');
    if (agentMay && tokenIs(token, acl.agentToken)) return;
    throw new MeshError(
      'MESH_ERR_API_PERMISSION_DENIED',
      token
        ? `Permission denied: the token may not ${write ? 'write' : 'read'} ${path}`
        : `Permission denied: ${path} needs a token (X-Consul-Token header, --token or MESHFED_HTTP_TOKEN)`,
    );
  }

  private serialize(out: ApiResponse, method: string): { headers: Record<string, string>; body: Buffer } {
    const headers: Record<string, string> = { ...out.headers };
    const body = out.text ? Buffer.from(String(out.body)) : this.encodeBody(out.body);
    headers['content-type'] = out.text ? 'text/plain; charset=utf-8' : 'application/json';
    headers['content-length'] = String(body.length);
    if (method === 'GET' || method === 'HEAD') {
      headers['x-consul-index'] = String(Math.max(1, out.index ?? this.store.currentIndex()));
      headers['x-consul-knownleader'] = 'true';
      headers['x-consul-lastcontact'] = '0';
      headers['x-consul-effective-consistency'] = 'leader';
    }
    return { headers, body };
  }

  private send(res: ServerResponse, out: ApiResponse, method: string): void {
    const { headers, body } = this.serialize(out, method);
    res.writeHead(out.status ?? 200, headers);
    res.end(method === 'HEAD' ? undefined : body);
  }

  /**
   * Add an endpoint. The daemon mounts the operator endpoints of the parts the server does not
   * know (gossip, federation, CA rotation) with it; writes need the management token like any.
   */
  addRoute(method: string, pattern: string, handler: Handler, opts: { write?: boolean } = {}): void {
    this.router.add(method, pattern, handler, opts);
  }

  /** Answer a request another DC's server forwarded (a `?dc=` read, or a write to the primary). */
  async handleForwarded(f: ForwardRequest): Promise<ForwardResponse> {
    const ac = new AbortController();
    this.inflight.add(ac);
    try {
      const url = new URL(`${f.path}${f.query}`, 'http://x');
      const m = this.router.match(f.method, url.pathname);
      if (m === undefined) throw new MeshError('MESH_ERR_API_NOT_FOUND', `no such endpoint: ${url.pathname}`);
      if (m === 'method')
        throw new MeshError(
          'MESH_ERR_API_METHOD_NOT_ALLOWED',
          `method ${f.method} not allowed on ${url.pathname}`,
        );
      this.authorize(f.token, url.pathname, m.route.write === true);
      const out = await m.route.handler({
        method: f.method,
        path: url.pathname,
        params: m.params,
        query: url.searchParams,
        headers: {},
        token: f.token,
        signal: ac.signal,
        body: async () => (f.body ? parseJson(Buffer.from(f.body, 'utf8')) : undefined),
      });
      const { headers, body } = this.serialize(out, f.method);
      return { status: out.status ?? 200, headers, body: body.toString('utf8') };
    } catch (err) {
      const e = toMeshError(err);
      return {
        status: e.status,
        headers: { 'content-type': 'text/plain; charset=utf-8', 'x-meshfed-error-code': e.code },
        body: `${e.message}\n`,
      };
    } finally {
      this.inflight.delete(ac);
    }
  }

  /** JSON bytes of a body; memoised per object so watchers woken together share one encoding. */
  private encodeBody(body: unknown): Buffer {
    if (body === null || typeof body !== 'object') return Buffer.from(JSON.stringify(body ?? null));
    let buf = this.encoded.get(body);
    if (!buf) {
      buf = Buffer.from(JSON.stringify(body));
      this.encoded.set(body, buf);
    }
    return buf;
  }

  private async forward(
    dc: string,
    apiReq: ApiRequest,
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
  ): Promise<void> {
    const remote = this.deps.remote;
    if (!remote || !remote.datacenters().includes(dc))
      throw new MeshError('MESH_ERR_SERVER_DC_UNKNOWN', `No path to datacenter "${dc}"`, { details: { dc } });
    const body = req.method === 'GET' ? undefined : (await readBody(req, this.maxBody)).toString('utf8');
    const params = new URLSearchParams(url.search);
    params.delete('dc');
    const query = params.size ? `?${params.toString()}` : '';
    const out = await remote.forward(dc, {
      method: apiReq.method,
      path: url.pathname,
      query,
      body,
      token: apiReq.token,
    });
    res.writeHead(out.status, out.headers);
    res.end(out.body);
  }

  private async read(req: ApiRequest, keys: readonly WatchKey[], read: () => unknown): Promise<ApiResponse> {
    // Many watchers of one result wake together on one change; compute the answer once per index.
    const q = [...req.query.entries()].filter(([k]) => k !== 'index' && k !== 'wait').sort();
    const memoKey = `${req.path}?${new URLSearchParams(q).toString()}`;
    const out = await blockingRead(req, this.store, this.clock, this.blocking, keys, () => {
      const index = this.store.indexOf(keys);
      const hit = this.readMemo.get(memoKey);
      if (hit && hit.index === index) return hit.body;
      const body = read();
      this.readMemo.delete(memoKey);
      this.readMemo.set(memoKey, { index, body });
      if (this.readMemo.size > 1000) this.readMemo.delete(this.readMemo.keys().next().value!);
      return body;
    });
    return out;
  }

  private write(ops: readonly WriteOp[]): number {
    return this.store.write(ops);
  }

  // --- routes ---------------------------------------------------------------------------------

  private routes(): void {
    const r = this.router;
    const get = (p: string, h: Handler): void => r.add('GET', p, h);
    const put = (p: string, h: Handler): void => r.add('PUT', p, h);
    const o = this.options;

    // status
    get('/v1/status/leader', () => ({ body: `${o.advertiseAddress}:${o.serverPort}` }));
    get('/v1/status/peers', () => ({ body: [`${o.advertiseAddress}:${o.serverPort}`] }));

    // catalog
    put('/v1/catalog/register', async (req) => {
      await this.store.writeAsync(catalogRegisterOps(this.store, await req.body(), o.datacenter));
      return { body: true };
    });
    put('/v1/catalog/deregister', async (req) => {
      await this.store.writeAsync(catalogDeregisterOps(this.store, await req.body()));
      return { body: true };
    });
    get('/v1/catalog/datacenters', () => ({
      body: [
        o.datacenter,
        ...(this.deps.remote?.datacenters() ?? []).filter((d) => d !== o.datacenter).sort(),
      ],
    }));
    get('/v1/catalog/nodes', (req) => this.read(req, [{ table: T_NODES }], () => this.catalog.nodes()));
    get('/v1/catalog/services', (req) =>
      this.read(req, [{ table: T_SERVICES }], () => this.catalog.servicesMap()),
    );
    get('/v1/catalog/service/:service', (req) => {
      const s = req.params['service']!;
      return this.read(req, CatalogReader.instanceKeys(s, false), () =>
        this.catalog.catalogService(s, false, req.query.getAll('tag')),
      );
    });
    get('/v1/catalog/connect/:service', (req) => {
      const s = req.params['service']!;
      return this.read(req, CatalogReader.instanceKeys(s, true), () =>
        this.catalog.catalogService(s, true, req.query.getAll('tag')),
      );
    });
    get('/v1/catalog/node/:node', (req) => {
      const n = req.params['node']!;
      return this.read(
        req,
        [{ table: T_NODES, key: n }, { table: T_SERVICES }],
        () => this.catalog.nodeServices(n) ?? null,
      );
    });

    // health
    const health =
      (connect: boolean): Handler =>
      (req) => {
        const s = req.params['service']!;
        const passing = req.query.has('passing') && req.query.get('passing') !== 'false';
        return this.read(req, CatalogReader.healthKeys(s, connect), () =>
          this.catalog.health(s, connect, { passing, tags: req.query.getAll('tag') }),
        );
      };
    get('/v1/health/service/:service', health(false));
    get('/v1/health/connect/:service', health(true));
    get('/v1/health/checks/:service', (req) => {
      const s = req.params['service']!;
      return this.read(req, [{ table: T_CHECKS, secondary: s }], () =>
        this.catalog.checksOf((c) => c.ServiceName === s),
      );
    });
    get('/v1/health/node/:node', (req) => {
      const n = req.params['node']!;
      return this.read(req, [{ table: T_CHECKS }], () => this.catalog.nodeChecks(n));
    });
    get('/v1/health/state/:state', (req) => {
      const st = req.params['state']!;
      if (st !== 'any' && !(checkStatuses as readonly string[]).includes(st))
        throw bad('state', `must be any, passing, warning or critical, got "${st}"`);
      return this.read(req, [{ table: T_CHECKS }], () =>
        this.catalog.checksOf((c) => st === 'any' || c.Status === st),
      );
    });

    // agent
    get('/v1/agent/self', () => ({
      body: {
        Config: {
          Datacenter: o.datacenter,
          PrimaryDatacenter: o.primaryDatacenter,
          NodeName: o.nodeName,
          Server: true,
          Domain: o.domain,
        },
        Member: { Name: o.nodeName, Addr: o.advertiseAddress, Port: o.serverPort, Status: 1 },
      },
    }));
    put('/v1/agent/service/register', async (req) => {
      await this.agentRegister(await req.body());
      return { body: null };
    });
    put('/v1/agent/service/deregister/:id', (req) => {
      this.agentDeregister(req.params['id']!);
      return { body: null };
    });
    get('/v1/agent/services', () => {
      const out: Record<string, Json> = {};
      for (const row of this.catalog.nodeServiceList(o.nodeName))
        out[row.value.ID] = this.agentService(row.value);
      return { body: out };
    });
    get('/v1/agent/service/:id', (req) => {
      const row = this.catalog.service(o.nodeName, req.params['id']!);
      if (!row)
        throw new MeshError('MESH_ERR_SERVER_SERVICE_NOT_FOUND', `unknown service ID "${req.params['id']}"`);
      return this.read(req, [{ table: T_SERVICES, key: row.key }], () => this.agentService(row.value));
    });
    get('/v1/agent/checks', () => {
      const out: Record<string, CheckValue> = {};
      for (const c of this.catalog.nodeChecks(o.nodeName)) {
        const { CreateIndex: _c, ModifyIndex: _m, ...rest } = c;
        out[c.CheckID] = rest;
      }
      return { body: out };
    });
    put('/v1/agent/check/register', async (req) => {
      const b = obj(await req.body(), 'body');
      const sid = optStr(b['ServiceID'], 'ServiceID');
      const svc = sid ? this.catalog.service(o.nodeName, sid)?.value : undefined;
      if (sid && !svc) throw bad('ServiceID', `no service "${sid}" is registered on this agent`);
      const nameField = optStr(b['Name'], 'Name');
      if (!nameField) throw bad('Name', 'is required');
      const check = parseCheck(b, '', {
        node: o.nodeName,
        checkId: nameField,
        name: nameField,
        ...(svc ? { service: svc } : {}),
      });
      this.write(checkOps(check));
      this.checks.sync(check);
      return { body: null };
    });
    put('/v1/agent/check/deregister/:id', (req) => {
      const id = req.params['id']!;
      const row = this.catalog.check(o.nodeName, id);
      if (!row) throw new MeshError('MESH_ERR_SERVER_CHECK_NOT_FOUND', `unknown check ID "${id}"`);
      this.checks.stop(id);
      this.write([{ table: T_CHECKS, key: row.key, op: 'delete' }]);
      return { body: null };
    });
    const ttl =
      (status: CheckStatus): Handler =>
      (req) => {
        this.ttlUpdate(req.params['id']!, status, req.query.get('note') ?? '');
        return { body: null };
      };
    put('/v1/agent/check/pass/:id', ttl('passing'));
    put('/v1/agent/check/warn/:id', ttl('warning'));
    put('/v1/agent/check/fail/:id', ttl('critical'));
    put('/v1/agent/check/update/:id', async (req) => {
      const b = obj(await req.body(), 'body');
      const status = b['Status'];
      if (typeof status !== 'string' || !(checkStatuses as readonly string[]).includes(status))
        throw bad('Status', `must be passing, warning or critical, got ${JSON.stringify(status)}`);
      this.ttlUpdate(req.params['id']!, status as CheckStatus, optStr(b['Output'], 'Output') ?? '');
      return { body: null };
    });
    r.add(
      'POST',
      '/v1/agent/connect/authorize',
      async (req) => ({ body: this.authorizeConnect(await req.body()) }),
      {
        write: false,
      },
    );
    get('/v1/agent/metrics', () => ({ body: this.deps.registry?.render() ?? '', text: true }));

    // CA
    const caKeys: WatchKey[] = [{ table: T_CA_ROOTS }];
    const roots: Handler = (req) =>
      this.read(req, caKeys, () => {
        const ca = this.requireCa();
        const row = this.store.get(T_CA_ROOTS, 'roots');
        return { ...ca.rootsResponse(), ...(row ? {} : {}) };
      });
    get('/v1/connect/ca/roots', roots);
    get('/v1/agent/connect/ca/roots', roots);
    get('/v1/connect/ca/configuration', () => ({ body: this.requireCa().configuration() }));
    put('/v1/connect/ca/configuration', async (req) => {
      await this.requireCa().setConfiguration(await req.body());
      return { body: null };
    });
    r.add('GET', '/v1/agent/connect/ca/leaf/:service', (req) => this.leaf(req), { write: true });

    // intentions
    const intentionKeys: WatchKey[] = [
      { table: T_INTENTIONS },
      { table: T_CONFIG, secondary: 'service-intentions' },
    ];
    get('/v1/connect/intentions', (req) => this.read(req, intentionKeys, () => this.intentions.all()));
    r.add('POST', '/v1/connect/intentions', async (req) => {
      const v = this.intentions.build(await req.body(), undefined);
      const dup = this.intentions.findExact(
        { namespace: v.SourceNS, name: v.SourceName },
        { namespace: v.DestinationNS, name: v.DestinationName },
      );
      if (dup)
        throw new MeshError(
          'MESH_ERR_API_CONFLICT',
          `duplicate intention found: ${v.SourceName} => ${v.DestinationName} already exists with ID ${dup.value.ID}`,
        );
      this.write([{ table: T_INTENTIONS, key: v.ID, op: 'put', value: v }]);
      return { body: { ID: v.ID } };
    });
    const ends = (
      req: ApiRequest,
    ): { src: ReturnType<typeof parseEndpoint>; dst: ReturnType<typeof parseEndpoint> } => ({
      src: parseEndpoint(req.query.get('source') ?? undefined, 'source'),
      dst: parseEndpoint(req.query.get('destination') ?? undefined, 'destination'),
    });
    get('/v1/connect/intentions/exact', (req) => {
      const { src, dst } = ends(req);
      return this.read(req, intentionKeys, () => {
        const row = this.intentions.findExact(src, dst);
        if (!row)
          throw new MeshError('MESH_ERR_API_NOT_FOUND', `intention not found: ${src.name} => ${dst.name}`);
        return { ...row.value, CreateIndex: row.createIndex, ModifyIndex: row.modifyIndex };
      });
    });
    put('/v1/connect/intentions/exact', async (req) => {
      const e = ends(req);
      const existing = this.intentions.findExact(e.src, e.dst);
      const v = this.intentions.build(await req.body(), existing?.value, e);
      this.write([{ table: T_INTENTIONS, key: v.ID, op: 'put', value: v }]);
      return { body: true };
    });
    r.add('DELETE', '/v1/connect/intentions/exact', (req) => {
      const { src, dst } = ends(req);
      const row = this.intentions.findExact(src, dst);
      if (row) this.write([{ table: T_INTENTIONS, key: row.key, op: 'delete' }]);
      return { body: true };
    });
    get('/v1/connect/intentions/match', (req) => {
      const by = req.query.get('by');
      if (by !== 'source' && by !== 'destination')
        throw bad('by', `must be "source" or "destination", got ${JSON.stringify(by)}`);
      const names = req.query.getAll('name');
      if (names.length === 0) throw bad('name', 'is required');
      const eps = names.map((n) => ({ n, ep: parseEndpoint(n, 'name') }));
      return this.read(req, intentionKeys, () =>
        Object.fromEntries(eps.map(({ n, ep }) => [n, this.intentions.match(by, ep)])),
      );
    });
    get('/v1/connect/intentions/check', (req) => {
      const { src, dst } = ends(req);
      return this.read(req, [...intentionKeys, { table: T_CONFIG, secondary: 'service-intentions' }], () => {
        const d = this.intentions.decide(src, dst, o.defaultIntentionPolicy);
        return { Allowed: d.allowed };
      });
    });
    get('/v1/connect/intentions/:id', (req) => {
      const id = req.params['id']!;
      return this.read(req, [{ table: T_INTENTIONS, key: id }], () => {
        const row = this.intentions.get(id);
        if (!row) throw new MeshError('MESH_ERR_API_NOT_FOUND', `Intention not found: ${id}`);
        return { ...row.value, CreateIndex: row.createIndex, ModifyIndex: row.modifyIndex };
      });
    });
    put('/v1/connect/intentions/:id', async (req) => {
      const id = req.params['id']!;
      const row = this.intentions.get(id);
      if (!row) throw new MeshError('MESH_ERR_API_NOT_FOUND', `Intention not found: ${id}`);
      const v = this.intentions.build(await req.body(), row.value);
      const dup = this.intentions.findExact(
        { namespace: v.SourceNS, name: v.SourceName },
        { namespace: v.DestinationNS, name: v.DestinationName },
      );
      if (dup && dup.key !== id)
        throw new MeshError('MESH_ERR_API_CONFLICT', `duplicate intention found with ID ${dup.key}`);
      this.write([{ table: T_INTENTIONS, key: id, op: 'put', value: v }]);
      return { body: null };
    });
    r.add('DELETE', '/v1/connect/intentions/:id', (req) => {
      const id = req.params['id']!;
      if (!this.intentions.get(id))
        throw new MeshError('MESH_ERR_API_NOT_FOUND', `Intention not found: ${id}`);
      this.write([{ table: T_INTENTIONS, key: id, op: 'delete' }]);
      return { body: null };
    });

    // config entries
    put('/v1/config', async (req) => {
      const { kind, name, entry } = validateConfigEntry(await req.body());
      this.checkRoutable(kind, name, entry);
      const rawCas = req.query.get('cas');
      let cas: number | undefined;
      if (rawCas !== null) {
        cas = Number(rawCas);
        if (!Number.isInteger(cas) || cas < 0)
          throw bad('cas', `expected a non-negative integer, got "${rawCas}"`);
      }
      try {
        this.write([
          {
            table: T_CONFIG,
            key: configKey(kind, name),
            op: 'put',
            value: entry,
            secondary: kind,
            ...(cas === undefined ? {} : { cas }),
          },
        ]);
      } catch (err) {
        // Consul answers a failed check-and-set with 200 and `false`.
        if (err instanceof MeshError && err.code === 'MESH_ERR_STORE_CAS_FAILED') return { body: false };
        throw err;
      }
      return { body: true };
    });
    get('/v1/config/:kind', (req) => {
      const kind = parseKind(req.params['kind'], 'kind');
      return this.read(req, [{ table: T_CONFIG, secondary: kind }], () =>
        this.store
          .list<Json>(T_CONFIG, { secondary: kind })
          .map((row) => ({ ...row.value, CreateIndex: row.createIndex, ModifyIndex: row.modifyIndex })),
      );
    });
    get('/v1/config/:kind/:name', (req) => {
      const kind = parseKind(req.params['kind'], 'kind');
      const key = configKey(kind, req.params['name']!);
      return this.read(req, [{ table: T_CONFIG, key }], () => {
        const row = this.store.get<Json>(T_CONFIG, key);
        if (!row)
          throw new MeshError(
            'MESH_ERR_API_NOT_FOUND',
            `Config entry not found for "${kind}" / "${req.params['name']}"`,
          );
        return { ...row.value, CreateIndex: row.createIndex, ModifyIndex: row.modifyIndex };
      });
    });
    r.add('DELETE', '/v1/config/:kind/:name', (req) => {
      const kind = parseKind(req.params['kind'], 'kind');
      const key = configKey(kind, req.params['name']!);
      this.checkRoutable(kind, req.params['name']!, undefined);
      const rawCas = req.query.get('cas');
      if (rawCas !== null) {
        const cas = Number(rawCas);
        if (!Number.isInteger(cas) || cas < 0)
          throw bad('cas', `expected a non-negative integer, got "${rawCas}"`);
        const row = this.store.get(T_CONFIG, key);
        if (!row || row.modifyIndex !== cas) return { body: false };
        this.write([{ table: T_CONFIG, key, op: 'delete', cas }]);
        return { body: true };
      }
      this.write([{ table: T_CONFIG, key, op: 'delete' }]);
      return { body: {} };
    });

    // federation hooks (contracts.md)
    get('/v1/internal/federation-states/mesh-gateways', (req) =>
      this.read(req, [{ table: T_SERVICES }, { table: T_CHECKS }, { table: T_NODES }], () => {
        const gateways = new Set(
          this.store
            .list<ServiceValue>(T_SERVICES)
            .filter((row) => row.value.Kind === 'mesh-gateway')
            .map((row) => row.value.Service),
        );
        const local = [...gateways].flatMap((g) =>
          this.catalog
            .health(g, false, { passing: false, tags: [] })
            .filter((e) => e.Service.Kind === 'mesh-gateway'),
        );
        return { ...(this.deps.remote?.meshGateways?.() ?? {}), [o.datacenter]: local };
      }),
    );
  }

  // --- agent helpers ----------------------------------------------------------------------------

  private agentService(s: ServiceValue): Json {
    const out: Json = {
      ID: s.ID,
      Service: s.Service,
      Tags: s.Tags,
      Meta: s.Meta,
      Port: s.Port,
      Address: s.Address,
      TaggedAddresses: s.TaggedAddresses,
      Weights: s.Weights,
      EnableTagOverride: s.EnableTagOverride,
      Datacenter: this.options.datacenter,
    };
    if (s.Kind) out['Kind'] = s.Kind;
    if (s.Proxy) out['Proxy'] = s.Proxy;
    if (s.Connect) out['Connect'] = s.Connect;
    return out;
  }

  // Catalog and agent registrations go through group commit (the high-volume writes); writes that
  // check something and then write (intentions, CAS) stay synchronous so nothing interleaves.
  private async agentRegister(body: unknown): Promise<void> {
    const node = this.options.nodeName;
    const b = obj(body, 'body');
    const svc = parseService(b, '', 'Name');
    const ops: WriteOp[] = [...serviceOps(node, svc)];
    const checks: CheckValue[] = [];
    const collect = (src: Json, field: string, service: ServiceValue): void => {
      const list: unknown[] = [];
      if (src['Check'] !== undefined && src['Check'] !== null) list.push(src['Check']);
      if (src['Checks'] !== undefined && src['Checks'] !== null) {
        if (!Array.isArray(src['Checks'])) throw bad(`${field}Checks`, 'expected a list');
        list.push(...(src['Checks'] as unknown[]));
      }
      list.forEach((raw, i) => {
        const f =
          list.length === 1 && src['Check'] !== undefined ? `${field}Check.` : `${field}Checks[${i}].`;
        checks.push(
          parseCheck(obj(raw, f.slice(0, -1)), f, {
            node,
            checkId: list.length === 1 ? `service:${service.ID}` : `service:${service.ID}:${i + 1}`,
            name: `Service '${service.Service}' check`,
            service,
          }),
        );
      });
    };
    collect(b, '', svc);
    const connect =
      b['Connect'] === undefined || b['Connect'] === null ? undefined : obj(b['Connect'], 'Connect');
    const sidecarRaw = connect?.['SidecarService'];
    let sidecar: ServiceValue | undefined;
    if (sidecarRaw !== undefined && sidecarRaw !== null) {
      const sc = obj(sidecarRaw, 'Connect.SidecarService');
      const proxyIn =
        sc['Proxy'] === undefined || sc['Proxy'] === null
          ? {}
          : obj(sc['Proxy'], 'Connect.SidecarService.Proxy');
      const id = `${svc.ID}-sidecar-proxy`;
      const existing = this.catalog.service(node, (sc['ID'] as string) || id)?.value;
      sidecar = parseService(
        {
          ...sc,
          Name: sc['Name'] ?? `${svc.Service}-sidecar-proxy`,
          ID: sc['ID'] ?? id,
          Kind: 'connect-proxy',
          Port: sc['Port'] ?? existing?.Port ?? this.allocateSidecarPort(),
          Tags: sc['Tags'] ?? svc.Tags,
          Meta: sc['Meta'] ?? svc.Meta,
          Proxy: {
            ...proxyIn,
            DestinationServiceName: svc.Service,
            DestinationServiceID: svc.ID,
            LocalServiceAddress: proxyIn['LocalServiceAddress'] ?? '127.0.0.1',
            LocalServicePort: proxyIn['LocalServicePort'] ?? svc.Port,
          },
        },
        'Connect.SidecarService.',
        'Name',
      );
      ops.push(...serviceOps(node, sidecar));
      const hasChecks = sc['Check'] !== undefined || sc['Checks'] !== undefined;
      if (hasChecks) collect(sc, 'Connect.SidecarService.', sidecar);
      else {
        // Consul's defaults for a sidecar: its listener is reachable, and its service is healthy.
        const addr = sidecar.Address || '127.0.0.1';
        checks.push(
          parseCheck(
            { Name: 'Connect Sidecar Listening', TCP: `${addr}:${sidecar.Port}`, Interval: '10s' },
            'Connect.SidecarService.',
            { node, checkId: `service:${sidecar.ID}:1`, name: 'Connect Sidecar Listening', service: sidecar },
          ),
          parseCheck(
            { Name: `Connect Sidecar Aliasing ${svc.ID}`, AliasService: svc.ID },
            'Connect.SidecarService.',
            {
              node,
              checkId: `service:${sidecar.ID}:2`,
              name: `Connect Sidecar Aliasing ${svc.ID}`,
              service: sidecar,
            },
          ),
        );
      }
    }
    // Re-registering replaces the service's checks: drop the old ones not given again.
    const keep = new Set(checks.map((c) => c.CheckID));
    const ids = new Set([svc.ID, ...(sidecar ? [sidecar.ID] : [])]);
    for (const c of this.catalog.nodeChecks(node))
      if (ids.has(c.ServiceID) && !keep.has(c.CheckID)) {
        ops.push({ table: T_CHECKS, key: `${node}/${c.CheckID}`, op: 'delete' });
        this.checks.stop(c.CheckID);
      }
    for (const c of checks) {
      // Keep the current status of a check that is re-registered unchanged (no flap to critical).
      const prev = this.catalog.check(node, c.CheckID)?.value;
      if (prev && JSON.stringify(prev.Definition) === JSON.stringify(c.Definition) && c.Type !== '') {
        c.Status = prev.Status;
        c.Output = prev.Output;
      }
      ops.push(...checkOps(c));
    }
    await this.store.writeAsync(ops);
    for (const c of checks) this.checks.sync(c);
  }

  private allocateSidecarPort(): number {
    const used = new Set(
      this.catalog
        .nodeServiceList(this.options.nodeName)
        .filter((s) => s.value.Kind === 'connect-proxy')
        .map((s) => s.value.Port),
    );
    for (let p = SIDECAR_PORT_MIN; p <= SIDECAR_PORT_MAX; p++) if (!used.has(p)) return p;
    throw new MeshError(
      'MESH_ERR_API_BAD_REQUEST',
      'no free sidecar port in 21000-21255; give Connect.SidecarService.Port',
    );
  }

  private agentDeregister(id: string): void {
    const node = this.options.nodeName;
    const row = this.catalog.service(node, id);
    if (!row)
      throw new MeshError(
        'MESH_ERR_SERVER_SERVICE_NOT_FOUND',
        `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`,
      );
    const ops = deregisterServiceOps(this.store, node, id);
    // A sidecar goes with the service it fronts.
    for (const s of this.catalog.nodeServiceList(node))
      if (s.value.Kind === 'connect-proxy' && s.value.Proxy?.['DestinationServiceID'] === id)
        ops.push(...deregisterServiceOps(this.store, node, s.value.ID));
    for (const op of ops) if (op.table === T_CHECKS) this.checks.stop(op.key.slice(node.length + 1));
    this.write(ops);
  }

  private ttlUpdate(id: string, status: CheckStatus, output: string): void {
    const row = this.catalog.check(this.options.nodeName, id);
    if (!row) throw new MeshError('MESH_ERR_SERVER_CHECK_NOT_FOUND', `Unknown check ID "${id}"`);
    if (!row.value.Definition.TTL) throw bad('CheckID', `check "${id}" is not a TTL check`);
    this.checks.ttlUpdate(id, status, output);
  }

  private authorizeConnect(body: unknown): { Authorized: boolean; Reason: string } {
    const b = obj(body, 'body');
    const target = parseEndpoint(b['Target'], 'Target');
    const uri = optStr(b['ClientCertURI'], 'ClientCertURI');
    if (!uri) throw bad('ClientCertURI', 'is required');
    const id = parseSpiffeId(uri);
    if (!id.ok) throw bad('ClientCertURI', id.reason);
    if (id.value.kind !== 'service')
      return { Authorized: false, Reason: `ClientCertURI is not a service identity: ${uri}` };
    const ca = this.deps.ca;
    if (ca && id.value.trustDomain !== ca.trustDomain)
      return { Authorized: false, Reason: `Identity from an external trust domain: ${id.value.trustDomain}` };
    const d = this.intentions.decide(
      { namespace: id.value.namespace, name: id.value.service },
      target,
      this.options.defaultIntentionPolicy,
    );
    return {
      Authorized: d.allowed,
      Reason: d.intention
        ? `Matched L4 intention: ${d.reason}`
        : `Default behavior configured by ACLs: ${d.reason}`,
    };
  }

  private requireCa(): ServerCa {
    const ca = this.deps.ca;
    if (!ca || !ca.ready())
      throw new MeshError('MESH_ERR_SERVER_CA_NOT_READY', 'the CA is not available on this server yet');
    return ca;
  }

  /** Blocking leaf: returns the cached leaf, reissued after a roots change or past half its life. */
  private async leaf(req: ApiRequest): Promise<ApiResponse> {
    const ca = this.requireCa();
    const service = req.params['service']!;
    const problem = parseEndpoint(service, 'service');
    const keys: WatchKey[] = [{ table: T_CA_LEAVES, key: service }, { table: T_CA_ROOTS }];
    const ensure = async (): Promise<IssuedLeaf> => {
      const cached = this.leaves.get(service);
      const rootsIndex = this.store.indexOf([{ table: T_CA_ROOTS }]);
      const leafRow = this.store.get<{ RootsIndex: number }>(T_CA_LEAVES, service);
      if (cached && leafRow && leafRow.value.RootsIndex === rootsIndex && this.clock.now() < halfLife(cached))
        return cached;
      const leaf = await ca.issueLeaf({
        kind: 'service',
        service: problem.name,
        namespace: problem.namespace,
      });
      this.leaves.set(service, leaf);
      this.store.write([
        {
          table: T_CA_LEAVES,
          key: service,
          op: 'put',
          value: { Serial: leaf.SerialNumber, RootsIndex: rootsIndex },
        },
      ]);
      return leaf;
    };
    await ensure();
    const cached = this.leaves.get(service)!;
    const out = await blockingRead(
      req,
      this.store,
      this.clock,
      {
        ...this.blocking,
        maxWaitMs: Math.max(0, Math.min(this.blocking.maxWaitMs, halfLife(cached) - this.clock.now())),
      },
      keys,
      () => undefined,
    );
    const leaf = await ensure();
    return { body: leaf, index: Math.max(out.index ?? 1, this.store.indexOf(keys)) };
  }
}

function halfLife(leaf: IssuedLeaf): number {
  const a = Date.parse(leaf.ValidAfter);
  const b = Date.parse(leaf.ValidBefore);
  return a + (b - a) / 2;
}

/** Constant-time comparison against a configured token; an unset token matches nothing. */
function tokenIs(got: string | undefined, want: string | undefined): boolean {
  if (!want || got === undefined) return false;
  const a = Buffer.from(got);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}
