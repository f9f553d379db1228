// `meshfed server`: the composition root of a DC's control plane. It builds, from the runtime
// config, in dependency order:
//
//   store (SQLite) → CA (state in the store) → WAN gossip pool → federation channel
//   → HTTP API server (catalog, intentions, config entries, CA endpoints, federation endpoints)
//   → the static services of the config file, registered through the API like any client would
//
// and stops them in reverse order on SIGINT/SIGTERM. Each component gets only the narrow
// dependencies it declares; the adapters between them live here and nowhere else.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CertificateAuthority, type IssuedLeaf } from '@meshfed/ca';
import { ApiClient } from '@meshfed/client';
import type { MeshfedConfig } from '@meshfed/config';
import { errorMessage, Registry, systemClock, type Logger } from '@meshfed/core';
import {
  Federation,
  tokenSpent,
  type DcExport,
  type ForwardedRequest,
  type ForwardedResponse,
  type JoinTokenRecord,
  type Membership,
  type TlsMaterial,
  type TokenStore,
  type WanMember,
} from '@meshfed/federation';
import { WanPool } from '@meshfed/gossip';
import {
  CatalogReader,
  MeshServer,
  SqliteCaStateStorage,
  type ForwardRequest,
  type ForwardResponse,
} from '@meshfed/server';
import { SqliteStore } from '@meshfed/store';
import { afterJoin, loadJoin } from './join-memory.js';
import { mountOperatorRoutes } from './server-routes.js';
import { registerConfiguredServices } from './services.js';

export interface ServerDaemonDeps {
  logger: (component: string) => Logger;
  signal: AbortSignal;
}

export interface RunningServer {
  server: MeshServer;
  ca: CertificateAuthority;
  gossip: WanPool;
  federation: Federation;
  registry: Registry;
  close(): Promise<void>;
}

const HOUR = 3_600_000;

export async function startServerDaemon(
  config: MeshfedConfig,
  deps: ServerDaemonDeps,
): Promise<RunningServer> {
  const clock = systemClock;
  const registry = new Registry();
  const dc = config.datacenter;
  const primary = config.primary_datacenter ?? dc;
  const node = config.node_name ?? `${dc}-server`;
  const advertise = config.advertise_addr ?? config.bind_addr;
  const advertiseWan = config.advertise_addr_wan ?? advertise;
  const fedAddr = `${advertiseWan}:${config.ports.server}`;
  mkdirSync(config.data_dir, { recursive: true, mode: 0o700 });

  // 1. store
  const store = new SqliteStore(
    { path: join(config.data_dir, 'state.db') },
    { logger: deps.logger('store'), clock },
  );
  const closers: (() => Promise<void> | void)[] = [() => store.close()];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        deps.logger('server').warn({ err: errorMessage(err) }, 'error while stopping');
      }
    }
  };

  try {
    // 2. CA
    const ca = new CertificateAuthority(
      {
        datacenter: dc,
        primaryDatacenter: primary,
        domain: config.domain,
        privateKeyType: config.ca.private_key_type,
        privateKeyBits: config.ca.private_key_bits,
        leafTtlMs: config.ca.leaf_cert_ttl,
        intermediateTtlMs: config.ca.intermediate_cert_ttl,
        rootTtlMs: config.ca.root_cert_ttl,
        csrMaxPerSecond: config.ca.csr_max_per_second,
        csrMaxConcurrent: config.ca.csr_max_concurrent,
      },
      { logger: deps.logger('ca'), clock, storage: new SqliteCaStateStorage(store), registry },
    );
    await ca.start();
    closers.push(() => ca.close());

    // 3. WAN gossip
    const remembered = loadJoin(store);
    const gossip = new WanPool(
      {
        node,
        datacenter: dc,
        fedAddr,
        wanGateways: config.gateway.wan_address ? [config.gateway.wan_address] : [],
        bindAddr: config.bind_addr,
        bindPort: config.ports.serf_wan,
        profile: config.gossip.profile,
        keys: config.gossip.encrypt ? [config.gossip.encrypt] : [],
        // the configured addresses, and those a token join taught us before a restart
        retryJoin: [...new Set([...config.gossip.join, ...(remembered?.gossip ?? [])])],
        retryMinMs: Math.min(1000, config.gossip.retry_interval),
        retryMaxMs: config.gossip.retry_interval,
        retryMaxAttempts: config.gossip.retry_max,
      },
      { logger: deps.logger('gossip'), clock },
    );
    await gossip.start();
    closers.push(() => gossip.close());

    // 4. federation, with this server's certificate from the CA for its channel
    const serverTls = new ServerCertificate(ca, node, deps.logger('federation'));
    await serverTls.refresh();
    closers.push(() => serverTls.close());
    const catalog = new CatalogReader(store);
    // the federation hands forwarded requests to the server, which is built after it
    const late: { server?: MeshServer } = {};
    const federation = new Federation(
      {
        datacenter: dc,
        primaryDatacenter: primary,
        node,
        domain: config.domain,
        bindHost: config.bind_addr,
        bindPort: config.ports.server,
        advertiseAddrs: [fedAddr],
        gateways: config.federation.primary_gateways.length
          ? { [primary]: config.federation.primary_gateways }
          : {},
        // content hashes are cheap at these sizes; comparing every 2 s makes "in sync" prompt
        hashIntervalMs: 2_000,
      },
      {
        logger: deps.logger('federation'),
        clock,
        store,
        ca,
        tlsMaterial: () => serverTls.material(),
        membership: gossipMembership(gossip),
        tokenStore: new BlobTokenStore(store),
        registry,
        localExport: () => localExport(catalog),
        forwardHandler: async (req) => {
          if (!late.server) throw new Error('server not started');
          return late.server.handleForwarded(fromWire(req));
        },
      },
    );
    serverTls.onRenew(() => federation.reloadTls());
    for (const a of remembered?.servers ?? []) federation.addKnownServer(remembered!.primaryDatacenter, a);
    await federation.start();
    closers.push(() => federation.close());

    // 5. HTTP API
    const server = new MeshServer(
      {
        datacenter: dc,
        primaryDatacenter: primary,
        nodeName: node,
        dataDir: config.data_dir,
        domain: config.domain,
        http: {
          bindAddress: config.client_addr,
          port: config.ports.http,
          ...(config.tls.http.cert_file && config.tls.http.key_file
            ? { tls: { certFile: config.tls.http.cert_file, keyFile: config.tls.http.key_file } }
            : {}),
        },
        acl: {
          enabled: config.acl.enabled,
          defaultPolicy: config.acl.default_policy,
          ...(config.acl.tokens.management ? { managementToken: config.acl.tokens.management } : {}),
          ...(config.acl.tokens.agent ? { agentToken: config.acl.tokens.agent } : {}),
        },
        defaultIntentionPolicy: config.intentions.default_policy,
        serverPort: config.ports.server,
        advertiseAddress: advertise,
      },
      {
        logger: deps.logger('server'),
        clock,
        registry,
        store,
        ca,
        remote: {
          datacenters: () =>
            [
              ...new Set([
                dc,
                ...gossip.datacenters(),
                ...federation.federationStates().map((s) => s.datacenter),
              ]),
            ].sort(),
          forward: async (target, req) => toServer(await federation.forwardTo(target, toWire(req))),
          meshGateways: () => federation.meshGatewaysByDc(),
          forwardToPrimary: async (req) => toServer(await federation.forwardWrite(toWire(req))),
        },
      },
    );
    mountOperatorRoutes(server, {
      ca,
      gossip,
      federation,
      registry,
      config,
      afterJoin: (r, dialled) => afterJoin(r, dialled, { store, gossip, logger: deps.logger('federation') }),
    });
    await server.start();
    late.server = server;
    closers.push(() => server.close());
    // a change in the local catalog (a gateway, an instance's health) goes to the other DCs now
    const exportWatch = new AbortController();
    closers.push(() => exportWatch.abort());
    void watchLocalCatalog(store, exportWatch.signal, () => federation.notifyLocalChange());

    // unattended join from the config file
    if (config.federation.join_token && dc !== primary && ca.needsIntermediate()) {
      const addr = config.federation.primary_address ?? config.federation.primary_gateways[0];
      const r = await federation.join(config.federation.join_token, addr ? { address: addr } : {});
      await afterJoin(r, addr, { store, gossip, logger: deps.logger('federation') });
    }

    // 6. static services from the config file
    const client = new ApiClient({ address: server.httpAddress(), token: config.acl.tokens.management });
    await registerConfiguredServices(client, config);

    deps.logger('server').info(
      {
        dc,
        primary,
        node,
        http: server.httpAddress(),
        federation: fedAddr,
        gossip: `${config.bind_addr}:${config.ports.serf_wan}`,
      },
      'meshfed server ready',
    );
    return { server, ca, gossip, federation, registry, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The server's own certificate (server.<dc>.<domain>) for the federation channel, kept fresh. */
class ServerCertificate {
  private current: IssuedLeaf | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: (() => void)[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    private readonly ca: CertificateAuthority,
    private readonly node: string,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = ca.onChange(() => void this.refresh());
  }

  onRenew(fn: () => void): void {
    this.listeners.push(fn);
  }

  async refresh(): Promise<void> {
    if (!this.ca.ready()) return; // a secondary before its join has nothing to sign with
    try {
      this.current = await this.ca.issueLeaf({ kind: 'server', node: this.node });
      for (const fn of this.listeners) fn();
      const validBefore = Date.parse(this.current.ValidBefore);
      const validAfter = Date.parse(this.current.ValidAfter);
      const renewIn = Math.max(60_000, (validBefore - validAfter) / 2 - (Date.now() - validAfter));
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.refresh(), Math.min(renewIn, 24 * HOUR));
      this.timer.unref();
    } catch (err) {
      this.logger.warn(
        { err: errorMessage(err) },
        'could not issue the server certificate; retrying in 10 s',
      );
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.refresh(), 10_000);
      this.timer.unref();
    }
  }

  material(): TlsMaterial {
    const roots = this.ca.trustBundlePems();
    if (!this.current) {
      // Before a secondary has joined it holds no certificate; the join dials out pinning the
      // primary's fingerprint and needs none.
      return { key: '', cert: '', ca: roots };
    }
    return { key: this.current.PrivateKeyPEM, cert: this.current.CertPEM, ca: roots };
  }

  close(): void {
    clearTimeout(this.timer);
    this.unsubscribe();
  }
}

// The server speaks ForwardRequest (query string, body text); the federation channel carries
// ForwardedRequest (query map, body value). These two convert, losslessly for JSON APIs.
function toWire(req: ForwardRequest): ForwardedRequest {
  return {
    method: req.method,
    path: req.path,
    query: Object.fromEntries(new URLSearchParams(req.query)),
    ...(req.body !== undefined ? { body: req.body } : {}),
    ...(req.token !== undefined ? { token: req.token } : {}),
  };
}

function fromWire(req: ForwardedRequest): ForwardRequest {
  const q = new URLSearchParams(req.query ?? {}).toString();
  return {
    method: req.method,
    path: req.path,
    query: q ? `?${q}` : '',
    body:
      typeof req.body === 'string' ? req.body : req.body === undefined ? undefined : JSON.stringify(req.body),
    token: req.token,
  };
}

function toServer(res: ForwardedResponse): ForwardResponse {
  return {
    status: res.status,
    headers: res.headers,
    body: typeof res.body === 'string' ? res.body : JSON.stringify(res.body ?? null),
  };
}

function gossipMembership(pool: WanPool): Membership {
  return {
    members: (): WanMember[] =>
      pool.servers().map((s) => ({
        name: s.node,
        dc: s.datacenter,
        fedAddr: s.fedAddr,
        gossipAddr: s.gossipAddr,
        status:
          s.status === 'alive' || s.status === 'left' || s.status === 'failed'
            ? s.status
            : s.status === 'leaving'
              ? 'alive'
              : 'failed',
      })),
    onChange(listener) {
      const events = [
        'member-join',
        'member-leave',
        'member-failed',
        'member-update',
        'member-reap',
      ] as const;
      for (const e of events) pool.pool.on(e, listener);
      return () => {
        for (const e of events) pool.pool.off(e, listener);
      };
    },
  };
}

/** Join tokens in the store (only their hashes), so a restart does not forget which were used. */
class BlobTokenStore implements TokenStore {
  constructor(private readonly store: SqliteStore) {}
  private all(): Record<string, JoinTokenRecord> {
    return (this.store.getBlob('join_tokens') as Record<string, JoinTokenRecord> | undefined) ?? {};
  }
  put(record: JoinTokenRecord): void {
    this.store.putBlob('join_tokens', { ...this.all(), [record.id]: record });
  }
  get(id: string): JoinTokenRecord | undefined {
    return this.all()[id];
  }
  markUsed(id: string, at: number, by: string): boolean {
    return this.spend(id, { usedAt: at, usedBy: by });
  }
  revoke(id: string, at: number): boolean {
    return this.spend(id, { revokedAt: at });
  }
  private spend(id: string, patch: Partial<JoinTokenRecord>): boolean {
    const all = this.all();
    const r = all[id];
    if (!r || tokenSpent(r)) return false;
    this.store.putBlob('join_tokens', { ...all, [id]: { ...r, ...patch } });
    return true;
  }
  list(): JoinTokenRecord[] {
    return Object.values(this.all());
  }
}

/** What this DC publishes to the others: services with healthy counts, and its mesh gateways. */
function localExport(catalog: CatalogReader): DcExport {
  const services: DcExport['services'] = [];
  for (const name of Object.keys(catalog.servicesMap())) {
    const all = catalog.health(name, false, { passing: false, tags: [] });
    if (all.length === 0 || all[0]!.Service.Kind !== '') continue;
    const healthy = all.filter((e) => e.Checks.every((c) => c.Status === 'passing')).length;
    const meta = all[0]!.Service.Meta;
    services.push({ name, healthy, total: all.length, meta });
  }
  const meshGateways = catalog
    .health('mesh-gateway', false, { passing: false, tags: [] })
    .filter((e) => e.Service.Kind === 'mesh-gateway')
    .map((e) => {
      const wan = e.Service.TaggedAddresses['wan'];
      return {
        node: e.Node.Node,
        service: e.Service.ID,
        wanAddress: wan
          ? `${wan.Address}:${wan.Port}`
          : `${e.Service.Address || e.Node.Address}:${e.Service.Port}`,
        healthy: e.Checks.every((c) => c.Status === 'passing'),
      };
    });
  return { services, meshGateways };
}

async function watchLocalCatalog(
  store: SqliteStore,
  signal: AbortSignal,
  onChange: () => void,
): Promise<void> {
  let index = store.currentIndex();
  while (!signal.aborted) {
    try {
      index = await store.watchTables(['services', 'checks'], index, signal);
      onChange();
    } catch {
      return;
    }
  }
}
