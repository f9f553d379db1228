// Federation: one per server. It keeps a channel link to every other datacenter it knows (from the
// WAN pool, join results or configured gateways), and over those links:
//   - a secondary replicates the primary's replicated tables by a push stream (snapshot, then
//     every change in index order), each batch applied atomically with its cursor;
//   - a secondary gets its CA intermediate signed by the primary and follows the primary's roots;
//   - a secondary forwards writes of replicated kinds to the primary;
//   - every DC publishes its catalog export and mesh gateways to every other DC it can reach.
//
// Must never: write replicated kinds locally on a secondary (only applyReplicated does), log a join
// secret or forwarded token, or let one peer's failure stop the others.

import { X509Certificate } from 'node:crypto';
import {
  MeshError,
  backoff,
  errorMessage,
  nameProblem,
  parseDuration,
  parseHostPort,
  systemClock,
  toMeshError,
  type Clock,
  type Counter,
  type Gauge,
  type Logger,
  Registry,
  type TimerHandle,
} from '@meshfed/core';
import type { Peer } from './channel.js';
import {
  ChannelServer,
  certFingerprint,
  channelMetrics,
  defaultChannelOptions,
  dialPeer,
  emptyHandlers,
  presentedChain,
  serverIdentityOf,
  verifyPinnedChain,
  type ChannelMetrics,
  type ChannelOptions,
  type Handlers,
  type Subscription,
} from './channel.js';
import {
  checkJoinToken,
  decodeJoinToken,
  encodeJoinToken,
  hashSecret,
  newTokenSecret,
  joinTokenInfo,
  type JoinTokenInfo,
} from './join-token.js';
import { CommitTimes } from './commit-times.js';
import type {
  CaRootsResponse,
  DcExport,
  FederationCa,
  MemberStatus,
  Membership,
  ReplicationStore,
  StoreChange,
  TlsMaterial,
  TokenStore,
} from './interfaces.js';

/** A link up for longer than this resets its reconnect backoff when it drops. */
const STABLE_LINK_MS = 10_000;

export const REPLICATED_TABLES = ['intentions', 'config_entries'] as const;

export interface FederationOptions {
  datacenter: string;
  primaryDatacenter: string;
  node: string;
  domain: string;
  /** Federation (server) port to listen on. */
  bindHost: string;
  bindPort: number;
  /** host:port others reach us at (put in join tokens); defaults to the bound address. */
  advertiseAddrs: string[];
  /** Reach a DC through its mesh gateways (SNI `<node>.server.<dc>.<domain>`) instead of directly. */
  gateways: Record<string, string[]>;
  replicatedTables: readonly string[];
  batchSize: number;
  /** Rows per snapshot frame (a snapshot is applied in one transaction after its last part). */
  snapshotChunkRows: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  publishIntervalMs: number;
  /** A DC's published state older than this (by our clock) is marked stale. */
  staleAfterMs: number;
  hashIntervalMs: number;
  intermediateCheckMs: number;
  channel: Omit<ChannelOptions, 'datacenter' | 'node' | 'domain'>;
}

export const defaultFederationOptions = {
  domain: 'consul',
  bindHost: '127.0.0.1',
  bindPort: 8300,
  advertiseAddrs: [] as string[],
  gateways: {} as Record<string, string[]>,
  replicatedTables: REPLICATED_TABLES,
  batchSize: 500,
  snapshotChunkRows: 5_000,
  reconnectMinMs: 100,
  reconnectMaxMs: 10_000,
  publishIntervalMs: 5_000,
  staleAfterMs: 30_000,
  hashIntervalMs: 10_000,
  intermediateCheckMs: 60_000,
  channel: {
    maxFrameBytes: defaultChannelOptions.maxFrameBytes,
    heartbeatMs: defaultChannelOptions.heartbeatMs,
    heartbeatTimeoutMs: defaultChannelOptions.heartbeatTimeoutMs,
    requestTimeoutMs: defaultChannelOptions.requestTimeoutMs,
  },
};

export type FederationInput = Partial<Omit<FederationOptions, 'channel'>> &
  Pick<FederationOptions, 'datacenter' | 'primaryDatacenter' | 'node'> & {
    channel?: Partial<FederationOptions['channel']>;
  };

/** A write the server forwards from a secondary to the primary (its own HTTP request, verbatim). */
export interface ForwardedRequest {
  method: string;
  path: string;
  query?: Record<string, string>;
  body?: unknown;
  /** The caller's ACL token; forwarded, never logged. */
  token?: string;
}

export interface ForwardedResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export interface FederationDeps {
  logger: Logger;
  clock?: Clock;
  store: ReplicationStore;
  ca: FederationCa;
  tlsMaterial: () => TlsMaterial;
  membership?: Membership;
  tokenStore?: TokenStore;
  registry?: Registry;
  /** This DC's catalog export (services summary, mesh gateways). */
  localExport: () => DcExport;
  /** Primary: serve a write forwarded by a secondary (the server plugs its HTTP handler in). */
  forwardHandler?: (req: ForwardedRequest) => Promise<ForwardedResponse>;
  random?: () => number;
}

export interface KindStatus {
  kind: string;
  /** Last primary index applied (the stream's cursor). */
  lastAppliedIndex: number;
  lagMs: number | undefined;
  lastSuccessAt: number | undefined;
  lastError: string | undefined;
  appliedChanges: number;
  /** undefined until compared at the same index as the primary. */
  hashEqual: boolean | undefined;
  localHash: string | undefined;
  primaryHash: string | undefined;
}

export interface ReplicationSummary {
  index: number;
  lagMs: number | undefined;
  hashesEqual: boolean | undefined;
  lastError: string | undefined;
}

export interface FederationStateView {
  datacenter: string;
  services: DcExport['services'];
  meshGateways: DcExport['meshGateways'];
  /** When that DC produced it (its clock). */
  updatedAt: number;
  /** When we received it (our clock). */
  receivedAt: number;
  stale: boolean;
  /** The DC's own report of its replication (secondaries). */
  replication: ReplicationSummary | undefined;
}

export interface DcStatus {
  datacenter: string;
  role: 'primary' | 'secondary';
  local: boolean;
  reachable: boolean;
  gossip: MemberStatus | 'unknown';
  replicationIndex: number | undefined;
  lagMs: number | undefined;
  hashesEqual: boolean | undefined;
  lastError: string | undefined;
  stale: boolean;
  /** How long we have had no channel to that DC (undefined while connected or never connected). */
  downForMs: number | undefined;
}

export interface FederationStatus {
  datacenter: string;
  primaryDatacenter: string;
  role: 'primary' | 'secondary';
  datacenters: DcStatus[];
  kinds: KindStatus[];
}

export interface JoinOptions {
  /** Dial this host:port instead of the token's addresses (a gateway, say). */
  address?: string;
  /** Join even though local intentions/config exist (they will be replaced by the primary's). */
  force?: boolean;
}

export interface JoinResult {
  primaryDatacenter: string;
  primaryAddrs: string[];
  roots: CaRootsResponse;
  /** Local rows replaced by the primary's content (only with force). */
  discarded: string[];
  /** WAN gossip addresses of the federation's alive servers, as the primary saw them. */
  gossipAddrs: string[];
}

interface ReplicationBatch {
  kind: 'snapshot' | 'changes';
  /** For 'changes': the index this batch follows (must equal the secondary's cursor). */
  prev: number;
  index: number;
  changes: StoreChange[];
  /** Primary wall-clock time its oldest change was committed (lag = apply time - this). */
  committedAt: number;
  /** Snapshots travel in parts; the secondary applies them in one transaction after the last. */
  part?: number;
  last?: boolean;
}

interface PublishedState {
  dc: string;
  export: DcExport;
  updatedAt: number;
  replication?: ReplicationSummary;
}

interface Metrics {
  channel: ChannelMetrics;
  lag: Gauge;
  index: Gauge;
  applied: Counter;
  errors: Counter;
  reachable: Gauge;
}

/** One outgoing link to a remote DC: dial, keep, reconnect with jittered backoff. */
class Link {
  peer: Peer | undefined;
  attempt = 0;
  lastError: string | undefined;
  timer: TimerHandle | undefined;
  subs: Subscription[] = [];
  closed = false;
  /** Wall-clock time the link went down (undefined while up or never up). */
  downAt: number | undefined;
  constructor(readonly dc: string) {}
}

export class Federation {
  readonly options: FederationOptions;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly metrics: Metrics;
  private readonly handlers: Handlers = emptyHandlers();
  private server: ChannelServer | undefined;
  private readonly links = new Map<string, Link>();
  /** Servers learned outside gossip (join result, addKnownServer). */
  private readonly knownServers = new Map<string, Set<string>>();
  private readonly states = new Map<string, { state: PublishedState; receivedAt: number }>();
  private readonly kinds = new Map<string, KindStatus>();
  /** Primary: index last pushed to each secondary. */
  private readonly pushedIndex = new Map<string, number>();
  private readonly timers: TimerHandle[] = [];
  private readonly unsubscribers: (() => void)[] = [];
  private readonly ac = new AbortController();
  private started = false;
  private renewing: Promise<void> | undefined;
  /** Primary: when each index was seen committed, for the lag carried in batches. */
  private readonly commitTimes = new CommitTimes();
  /** Secondary: snapshot parts received so far on the current stream. */
  private pendingSnapshot: { index: number; rows: StoreChange[]; next: number } | undefined;

  constructor(
    input: FederationInput,
    private readonly deps: FederationDeps,
  ) {
    this.options = {
      ...defaultFederationOptions,
      ...input,
      channel: { ...defaultFederationOptions.channel, ...input.channel },
    };
    for (const [what, v] of [
      ['datacenter', this.options.datacenter],
      ['primaryDatacenter', this.options.primaryDatacenter],
    ] as const) {
      const p = nameProblem('datacenter', v);
      if (p) throw new MeshError('MESH_ERR_CONFIG_INVALID', `federation ${what}: ${p}`);
    }
    this.clock = deps.clock ?? systemClock;
    this.logger = deps.logger;
    // A private registry when none is given: metrics still count, nobody scrapes them.
    const registry = deps.registry ?? new Registry();
    this.metrics = {
      channel: channelMetrics(registry),
      lag: registry.gauge(
        'meshfed_federation_replication_lag_seconds',
        'Primary commit to local apply, last batch',
        ['kind'],
      ),
      index: registry.gauge('meshfed_federation_replication_index', 'Last primary index applied'),
      applied: registry.counter(
        'meshfed_federation_replication_applied_changes_total',
        'Replicated changes applied',
        ['kind'],
      ),
      errors: registry.counter('meshfed_federation_errors_total', 'Federation errors', ['reason']),
      reachable: registry.gauge('meshfed_federation_dc_reachable', '1 when the channel to that DC is up', [
        'dc',
      ]),
    };
    for (const kind of this.options.replicatedTables)
      this.kinds.set(kind, {
        kind,
        lastAppliedIndex: 0,
        lagMs: undefined,
        lastSuccessAt: undefined,
        lastError: undefined,
        appliedChanges: 0,
        hashEqual: undefined,
        localHash: undefined,
        primaryHash: undefined,
      });
    this.registerHandlers();
  }

  get isPrimary(): boolean {
    return this.options.datacenter === this.options.primaryDatacenter;
  }

  private channelOptions(): ChannelOptions {
    return {
      ...this.options.channel,
      datacenter: this.options.datacenter,
      node: this.options.node,
      domain: this.options.domain,
    };
  }

  private peerDeps(): { logger: Logger; clock: Clock; metrics: ChannelMetrics; handlers: Handlers } {
    return { logger: this.logger, clock: this.clock, metrics: this.metrics.channel, handlers: this.handlers };
  }

  /** Listen on the federation port. Separate from start() so a joining DC can listen first. */
  async listen(): Promise<{ host: string; port: number }> {
    if (this.server) {
      const a = this.server.address()!;
      return { host: a.address, port: a.port };
    }
    this.server = new ChannelServer(
      {
        ...this.channelOptions(),
        host: this.options.bindHost,
        port: this.options.bindPort,
        allowJoin: this.isPrimary,
      },
      { ...this.peerDeps(), tlsMaterial: this.deps.tlsMaterial, onPeer: (p) => this.onIncomingPeer(p) },
    );
    const a = await this.server.listen();
    if (this.options.advertiseAddrs.length === 0) this.options.advertiseAddrs = [`${a.address}:${a.port}`];
    return { host: a.address, port: a.port };
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.listen();
    const every = (ms: number, fn: () => void): void => {
      const t = this.clock.setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.options.publishIntervalMs, () => this.publishAll());
    if (!this.isPrimary) {
      every(this.options.hashIntervalMs, () => void this.checkHashes().catch(() => undefined));
      every(this.options.intermediateCheckMs, () => this.maybeRenewIntermediate());
    }
    this.unsubscribers.push(
      this.deps.ca.onChange((what) => {
        if (what === 'roots' || what === 'intermediate') this.server?.reloadTls();
      }),
    );
    if (this.isPrimary) void this.watchCommits();
    if (this.deps.membership)
      this.unsubscribers.push(this.deps.membership.onChange(() => this.reconcileLinks()));
    this.reconcileLinks();
  }

  async close(): Promise<void> {
    if (this.ac.signal.aborted) return;
    this.ac.abort(new MeshError('MESH_ERR_FED_CHANNEL_CLOSED', 'federation stopped'));
    for (const t of this.timers.splice(0)) this.clock.clearInterval(t);
    for (const u of this.unsubscribers.splice(0)) u();
    for (const l of this.links.values()) this.dropLink(l);
    this.links.clear();
    await this.server?.close();
    this.server = undefined;
  }

  /** Re-read TLS material for the listener (the host calls it after re-issuing our server cert). */
  reloadTls(): void {
    this.server?.reloadTls();
  }

  /** A server of `dc` reachable at host:port (from a join result or static config). */
  addKnownServer(dc: string, addr: string): void {
    let s = this.knownServers.get(dc);
    if (!s) this.knownServers.set(dc, (s = new Set()));
    s.add(addr);
    if (this.started) this.reconcileLinks();
  }

  // --- links ---------------------------------------------------------------------------------

  private memberStatus(dc: string): MemberStatus | 'unknown' {
    const ms = this.deps.membership?.members().filter((m) => m.dc === dc) ?? [];
    if (ms.length === 0) return 'unknown';
    if (ms.some((m) => m.status === 'alive')) return 'alive';
    if (ms.some((m) => m.status === 'suspect')) return 'suspect';
    return ms.some((m) => m.status === 'failed') ? 'failed' : 'left';
  }

  private targets(dc: string): { host: string; port: number; node?: string }[] {
    const out: { host: string; port: number; node?: string }[] = [];
    const members =
      this.deps.membership
        ?.members()
        .filter((m) => m.dc === dc && m.status !== 'failed' && m.status !== 'left') ?? [];
    const gws = this.options.gateways[dc];
    if (gws && gws.length > 0) {
      // Through the gateways: dial a gateway, name the server by SNI.
      for (const g of gws) {
        const [host, port] = splitAddr(g);
        const node = members[0]?.name;
        out.push(node ? { host, port, node } : { host, port });
      }
      return out;
    }
    for (const m of members) {
      const [host, port] = splitAddr(m.fedAddr);
      out.push({ host, port, node: m.name });
    }
    for (const a of this.knownServers.get(dc) ?? []) {
      const [host, port] = splitAddr(a);
      if (!out.some((t) => t.host === host && t.port === port)) out.push({ host, port });
    }
    return out;
  }

  private knownDcs(): Set<string> {
    const dcs = new Set<string>(this.knownServers.keys());
    for (const m of this.deps.membership?.members() ?? []) dcs.add(m.dc);
    for (const dc of Object.keys(this.options.gateways)) dcs.add(dc);
    dcs.delete(this.options.datacenter);
    return dcs;
  }

  private reconcileLinks(): void {
    if (this.ac.signal.aborted) return;
    for (const dc of this.knownDcs()) {
      const gossip = this.memberStatus(dc);
      const link = this.links.get(dc);
      if (gossip === 'failed' || gossip === 'left') {
        // The DC is gone: withdraw it so failover can happen; its state is dropped from routing.
        if (link) {
          this.dropLink(link);
          this.links.delete(dc);
          this.metrics.reachable.labels(dc).set(0);
          this.logger.warn({ dc, gossip }, 'datacenter marked failed by gossip; link withdrawn');
        }
        continue;
      }
      if (!link) {
        const l = new Link(dc);
        this.links.set(dc, l);
        this.connect(l);
      }
    }
  }

  private dropLink(l: Link): void {
    l.closed = true;
    this.clock.clearTimeout(l.timer);
    for (const s of l.subs.splice(0)) s.close();
    l.peer?.close('link dropped');
    l.peer = undefined;
  }

  private scheduleReconnect(l: Link): void {
    if (l.closed || this.ac.signal.aborted) return;
    const delay = backoff(
      l.attempt++,
      this.options.reconnectMinMs,
      this.options.reconnectMaxMs,
      this.deps.random,
    );
    l.timer = this.clock.setTimeout(() => this.connect(l), delay);
    l.timer.unref();
  }

  private connect(l: Link): void {
    if (l.closed || this.ac.signal.aborted) return;
    const targets = this.targets(l.dc);
    if (targets.length === 0) {
      l.lastError = 'no known server address';
      return this.scheduleReconnect(l);
    }
    const t = targets[l.attempt % targets.length]!;
    let material: TlsMaterial;
    try {
      material = this.deps.tlsMaterial();
    } catch (err) {
      l.lastError = `no TLS material yet: ${errorMessage(err)}`;
      return this.scheduleReconnect(l);
    }
    dialPeer({ ...t, dc: l.dc }, { kind: 'mtls', material }, this.channelOptions(), this.peerDeps()).then(
      (peer) => {
        if (l.closed || this.ac.signal.aborted) return peer.close('link no longer wanted');
        l.peer = peer;
        l.lastError = undefined;
        l.downAt = undefined;
        const upAt = this.clock.monotonic();
        this.metrics.reachable.labels(l.dc).set(1);
        this.logger.info({ dc: l.dc, addr: `${t.host}:${t.port}` }, 'federation link up');
        peer.onClose((reason) => {
          if (l.peer === peer) l.peer = undefined;
          l.downAt = this.clock.now();
          // A link that dies right after it came up keeps backing off (a peer that refuses us at
          // once must not be redialled in a tight loop); one that lived a while starts over.
          if (this.clock.monotonic() - upAt > STABLE_LINK_MS) l.attempt = 0;
          this.metrics.reachable.labels(l.dc).set(0);
          for (const s of l.subs.splice(0)) s.close();
          if (!l.closed) {
            l.lastError = reason;
            this.logger.info({ dc: l.dc, reason }, 'federation link down; reconnecting');
            this.scheduleReconnect(l);
          }
        });
        this.onLinkUp(l, peer);
      },
      (err: unknown) => {
        l.lastError = errorMessage(err);
        this.metrics.errors.labels('dial').inc();
        this.logger.debug({ dc: l.dc, err: l.lastError }, 'federation dial failed');
        this.scheduleReconnect(l);
      },
    );
  }

  private onLinkUp(l: Link, peer: Peer): void {
    void this.publishTo(peer);
    if (l.dc !== this.options.primaryDatacenter || this.isPrimary) return;
    // To the primary: replication, roots, and the intermediate if we need one.
    l.subs.push(this.startReplication(peer));
    const roots = peer.subscribe('roots', null, async (body) => {
      await this.deps.ca.applyPrimaryRoots(body as CaRootsResponse);
      this.maybeRenewIntermediate();
    });
    l.subs.push(roots);
    roots.done.catch((err: unknown) => this.streamFailed(peer, 'roots', err));
  }

  private streamFailed(peer: Peer, what: string, err: unknown): void {
    if (peer.closed || this.ac.signal.aborted) return;
    const e = toMeshError(err);
    this.metrics.errors.labels(what).inc();
    this.logger.warn(
      { err: e.message, code: e.code, stream: what },
      'federation stream failed; reconnecting the link',
    );
    // Reconnecting resumes from the durable cursor: nothing is applied twice or lost.
    peer.close(`${what} stream failed`);
  }

  private primaryPeer(): Peer | undefined {
    return this.links.get(this.options.primaryDatacenter)?.peer;
  }

  // --- replication: secondary side ------------------------------------------------------------

  private startReplication(peer: Peer): Subscription {
    const primary = this.options.primaryDatacenter;
    const tables = this.options.replicatedTables;
    const cursor = this.deps.store.replicationCursor(primary);
    this.pendingSnapshot = undefined;
    const sub = peer.subscribe('replicate', { cursor, tables }, (body) => this.applyBatch(body, peer));
    sub.done.catch((err: unknown) => this.streamFailed(peer, 'replication', err));
    return sub;
  }

  private applyBatch(body: unknown, from: Peer): void {
    const primary = this.options.primaryDatacenter;
    const b = body as Partial<ReplicationBatch> | null;
    const fail = (why: string): never => {
      const msg = `replication batch rejected: ${why}`;
      for (const k of this.kinds.values()) k.lastError = msg;
      this.metrics.errors.labels('replication_batch').inc();
      throw new MeshError('MESH_ERR_FED_REPLICATION', msg);
    };
    if (!b || (b.kind !== 'snapshot' && b.kind !== 'changes')) return fail('unknown batch kind');
    if (
      typeof b.index !== 'number' ||
      typeof b.prev !== 'number' ||
      typeof b.committedAt !== 'number' ||
      !Array.isArray(b.changes)
    )
      return fail('malformed batch');
    const tables = new Set(this.options.replicatedTables);
    for (const c of b.changes) {
      if (
        !c ||
        typeof c !== 'object' ||
        typeof c.key !== 'string' ||
        !tables.has(c.table) ||
        (c.op !== 'put' && c.op !== 'delete')
      )
        return fail('a change is malformed or for a table that is not replicated');
    }
    const cursor = this.deps.store.replicationCursor(primary);
    if (b.kind === 'changes') {
      if (this.pendingSnapshot) return fail('changes arrived before the snapshot was complete');
      if (b.prev !== cursor) return fail(`gap: batch follows index ${b.prev}, we are at ${cursor}`);
      this.deps.store.applyReplicated(primary, b.index, b.changes);
    } else {
      const part = typeof b.part === 'number' ? b.part : 0;
      const ps = this.pendingSnapshot;
      if (part === 0) this.pendingSnapshot = { index: b.index, rows: [...b.changes], next: 1 };
      else if (!ps || ps.index !== b.index || ps.next !== part) return fail('snapshot part out of order');
      else {
        for (const c of b.changes) ps.rows.push(c);
        ps.next++;
      }
      if (b.last === false) return; // wait for the rest; nothing is applied until the last part
      const rows = this.pendingSnapshot!.rows;
      this.pendingSnapshot = undefined;
      this.deps.store.applyReplicated(primary, b.index, rows, { replaceAll: this.options.replicatedTables });
      b.changes = rows;
    }
    const now = this.clock.now();
    // committedAt is the primary's wall clock; the channel's offset estimate puts it on ours, so the
    // lag stays right when the two clocks disagree (0 offset until the first heartbeat answers).
    const lag = Math.max(0, Math.round(now - (b.committedAt - (from.clockOffsetMs ?? 0))));
    const counts = new Map<string, number>();
    for (const c of b.changes) counts.set(c.table, (counts.get(c.table) ?? 0) + 1);
    for (const k of this.kinds.values()) {
      k.lastAppliedIndex = b.index;
      k.lastSuccessAt = now;
      k.lastError = undefined;
      const n = counts.get(k.kind) ?? 0;
      if (n > 0 || b.kind === 'snapshot') {
        k.lagMs = lag;
        k.appliedChanges += n;
        k.hashEqual = undefined;
        this.metrics.applied.labels(k.kind).inc(n);
        this.metrics.lag.labels(k.kind).set(lag / 1000);
      }
    }
    this.metrics.index.set(b.index);
    this.logger.debug(
      { kind: b.kind, index: b.index, changes: b.changes.length, lagMs: lag },
      'replication batch applied',
    );
  }

  /**
   * Compare per-kind content hashes with the primary's. The primary says whether any replicated
   * change exists after our cursor; only when none does are the two contents comparable. Retries
   * (for up to `waitMs`) while replication is catching up; if it never settles the result stays
   * unknown (undefined), never a false alarm.
   */
  async checkHashes(waitMs = 2_000): Promise<Record<string, boolean | undefined>> {
    const primary = this.options.primaryDatacenter;
    const deadline = this.clock.monotonic() + waitMs;
    for (;;) {
      const peer = this.primaryPeer();
      if (!peer) throw new MeshError('MESH_ERR_FED_PRIMARY_UNREACHABLE', `no channel to ${primary}`);
      const cursor = this.deps.store.replicationCursor(primary);
      const r = await peer.request<{ comparable: boolean; hashes: Record<string, string> }>('hash', {
        tables: this.options.replicatedTables,
        cursor,
      });
      const settled = r.comparable && this.deps.store.replicationCursor(primary) === cursor;
      if (settled || this.clock.monotonic() >= deadline) {
        const out: Record<string, boolean | undefined> = {};
        for (const k of this.kinds.values()) {
          const local = this.deps.store.contentHash([k.kind]);
          k.localHash = local;
          k.primaryHash = r.hashes[k.kind];
          k.hashEqual = settled ? local === r.hashes[k.kind] : undefined;
          if (k.hashEqual === false) {
            k.lastError = `content hash differs from the primary's at index ${cursor}`;
            this.metrics.errors.labels('hash_mismatch').inc();
            this.logger.error({ kind: k.kind, index: cursor }, 'replicated content differs from the primary');
          }
          out[k.kind] = k.hashEqual;
        }
        return out;
      }
      await new Promise<void>((res) => this.clock.setTimeout(res, 20));
    }
  }

  /** Forward a write of a replicated kind to the primary; the caller gets the primary's answer. */
  async forwardWrite(req: ForwardedRequest): Promise<ForwardedResponse> {
    if (this.isPrimary)
      throw new MeshError('MESH_ERR_INTERNAL', 'forwardWrite is for secondaries; the primary writes locally');
    const peer = this.primaryPeer();
    if (!peer)
      throw new MeshError(
        'MESH_ERR_FED_PRIMARY_UNREACHABLE',
        `cannot forward the write: no channel to the primary ${this.options.primaryDatacenter}`,
      );
    return peer.request<ForwardedResponse>('forward', req);
  }

  /**
   * Send an API request to another DC (`?dc=` reads; writes of replicated kinds go through
   * forwardWrite): the remote server answers as if the caller had asked it directly.
   */
  async forwardTo(dc: string, req: ForwardedRequest): Promise<ForwardedResponse> {
    const peer =
      this.peerFor(dc) ??
      this.server?.connectedPeers().find((p) => p.info.dc === dc && p.info.authenticated && !p.closed);
    if (!peer)
      throw new MeshError(
        'MESH_ERR_FED_DC_UNKNOWN',
        `no channel to datacenter ${dc}; is it up and federated?`,
      );
    // A blocking read waits up to `wait` (Consul: default 5 min, max 10, plus jitter of wait/16)
    // on the remote server: the request may take that long, and no longer.
    const q = req.query ?? {};
    let waitMs = 0;
    if (q['index'] !== undefined) {
      const parsed = q['wait'] !== undefined ? parseDuration(q['wait']) : undefined;
      waitMs = Math.min(parsed?.ok ? parsed.value : 300_000, 600_000) * (17 / 16);
    }
    return peer.request<ForwardedResponse>('forward', req, waitMs + this.options.channel.requestTimeoutMs);
  }

  // --- federated CA --------------------------------------------------------------------------

  private maybeRenewIntermediate(): void {
    if (this.isPrimary || this.renewing || !this.deps.ca.needsIntermediate()) return;
    this.renewIntermediate().catch((err: unknown) => {
      this.metrics.errors.labels('intermediate').inc();
      this.logger.warn({ err: errorMessage(err) }, 'could not renew the CA intermediate; will retry');
    });
  }

  /**
   * Create a CSR, have the primary sign it over the channel, install the intermediate. One at a
   * time: a call while a renewal runs (the periodic check, a root rotation, an operator) joins it —
   * two overlapping renewals would each make a key and install a certificate for the other's.
   */
  renewIntermediate(): Promise<void> {
    this.renewing ??= this.signNewIntermediate().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async signNewIntermediate(): Promise<void> {
    const peer = this.primaryPeer();
    if (!peer)
      throw new MeshError(
        'MESH_ERR_FED_PRIMARY_UNREACHABLE',
        'no channel to the primary for the intermediate',
      );
    const csr = await this.deps.ca.createIntermediateCsr();
    const r = await peer.request<{ certPem: string; rootsResponse: CaRootsResponse }>(
      'ca.sign-intermediate',
      { csr },
    );
    await this.deps.ca.installIntermediate(r.certPem, r.rootsResponse);
    this.logger.info(
      { primary: this.options.primaryDatacenter },
      'CA intermediate signed by the primary and installed',
    );
  }

  // --- join ----------------------------------------------------------------------------------

  /** Primary: a single-use join token for a new DC. */
  createJoinToken(opts: { ttlMs: number }): { token: string; id: string; expiresAt: number } {
    if (!this.isPrimary)
      throw new MeshError('MESH_ERR_FED_NOT_PRIMARY', 'join tokens are created in the primary datacenter');
    const store = this.requireTokenStore();
    if (!(opts.ttlMs > 0)) throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'token TTL must be positive');
    const roots = this.deps.ca.rootsResponse();
    const active = roots.Roots.find((r) => r.ID === roots.ActiveRootID);
    if (!active) throw new MeshError('MESH_ERR_CA_NOT_INITIALIZED');
    const { id, secret } = newTokenSecret();
    const now = this.clock.now();
    const expiresAt = now + opts.ttlMs;
    store.put({ id, secretHash: hashSecret(secret), createdAt: now, expiresAt });
    const token = encodeJoinToken({
      id,
      dc: this.options.datacenter,
      addrs: this.options.advertiseAddrs,
      fp: certFingerprint(active.RootCert),
      s: secret,
      exp: expiresAt,
    });
    this.logger.info({ tokenId: id, expiresAt }, 'join token created');
    return { token, id, expiresAt };
  }

  /** Primary: every join token, newest first, without secrets. */
  listJoinTokens(): JoinTokenInfo[] {
    if (!this.isPrimary)
      throw new MeshError('MESH_ERR_FED_NOT_PRIMARY', 'join tokens live in the primary datacenter');
    const now = this.clock.now();
    return this.requireTokenStore()
      .list()
      .sort((a, b) => b.createdAt - a.createdAt)
      .map((r) => joinTokenInfo(r, now));
  }

  /** Primary: revoke a token that has not been used yet, so it can never join a DC. */
  revokeJoinToken(id: string): JoinTokenInfo {
    if (!this.isPrimary)
      throw new MeshError('MESH_ERR_FED_NOT_PRIMARY', 'join tokens are revoked in the primary datacenter');
    const store = this.requireTokenStore();
    const rec = store.get(id);
    if (!rec)
      throw new MeshError(
        'MESH_ERR_API_NOT_FOUND',
        `no join token with ID "${id}"; list them with: meshfed federation token list`,
      );
    const now = this.clock.now();
    if (!store.revoke(id, now)) {
      const info = joinTokenInfo(rec, now);
      throw new MeshError(
        'MESH_ERR_API_CONFLICT',
        `join token ${id} is ${info.state}${info.usedBy ? ` (by ${info.usedBy})` : ''}; only an unused token can be revoked`,
      );
    }
    this.logger.info({ tokenId: id }, 'join token revoked');
    return joinTokenInfo(store.get(id)!, now);
  }

  private requireTokenStore(): TokenStore {
    if (!this.deps.tokenStore) throw new MeshError('MESH_ERR_INTERNAL', 'no token store configured');
    return this.deps.tokenStore;
  }

  /**
   * Secondary: join the federation with a token. Verifies the primary by the pinned fingerprint
   * before sending the secret, gets the intermediate signed, installs it with the trust bundle, and
   * records the primary's address and the federation states. Call start() afterwards.
   */
  async join(token: string, opts: JoinOptions = {}): Promise<JoinResult> {
    if (this.isPrimary)
      throw new MeshError('MESH_ERR_FED_NOT_PRIMARY', 'the primary datacenter does not join');
    const t = decodeJoinToken(token);
    if (t.dc !== this.options.primaryDatacenter)
      throw new MeshError(
        'MESH_ERR_FED_TOKEN_INVALID',
        `the token is for primary "${t.dc}" but this server's primary_datacenter is "${this.options.primaryDatacenter}"`,
      );
    const local = this.deps.store.snapshot(this.options.replicatedTables).rows;
    const wouldLose = local.map((r) => `${r.table}/${r.key}`);
    if (wouldLose.length > 0 && !opts.force)
      throw new MeshError(
        'MESH_ERR_FED_JOIN_CONFLICT',
        `joining would replace ${wouldLose.length} local entries with the primary's: ${wouldLose.slice(0, 20).join(', ')}${wouldLose.length > 20 ? ', …' : ''}; re-run with --force to discard them`,
        { details: { wouldLose } },
      );
    const addrs = opts.address ? [opts.address] : t.addrs;
    let lastErr: unknown = new MeshError(
      'MESH_ERR_FED_PRIMARY_UNREACHABLE',
      'the token lists no primary address',
    );
    for (const addr of addrs) {
      const [host, port] = splitAddr(addr);
      let peer: Peer;
      try {
        peer = await dialPeer(
          { host, port, dc: t.dc },
          { kind: 'pinned', fingerprint: t.fp },
          this.channelOptions(),
          { ...this.peerDeps(), handlers: emptyHandlers() },
        );
      } catch (err) {
        lastErr = err;
        continue;
      }
      try {
        const roots = await peer.request<CaRootsResponse>('join.roots', null);
        const chain = presentedChain(peer);
        const pinned = verifyPinnedChain(
          chain,
          (roots?.Roots ?? []).map((r) => r.RootCert),
          t.fp,
          this.clock.now(),
        );
        if (!pinned.ok)
          throw new MeshError(
            'MESH_ERR_FED_PIN_MISMATCH',
            `refusing to send the join secret to ${addr}: ${pinned.reason}`,
          );
        const leaf = new X509Certificate(chain[0]!);
        const id = serverIdentityOf({ subjectaltname: leaf.subjectAltName ?? '' }, this.options.domain);
        if (id?.dc !== t.dc)
          throw new MeshError('MESH_ERR_FED_PIN_MISMATCH', `${addr} is not a server of ${t.dc}`);
        // Only now, talking to the pinned primary, does the secret leave this process. The CA
        // learns the trust domain and roots first: its CSR names them.
        await this.deps.ca.applyPrimaryRoots(roots);
        const csr = await this.deps.ca.createIntermediateCsr();
        const r = await peer.request<{
          certPem: string;
          roots: CaRootsResponse;
          states: PublishedState[];
          gossip?: unknown;
        }>('join', {
          id: t.id,
          secret: t.s,
          dc: this.options.datacenter,
          node: this.options.node,
          csr,
        });
        await this.deps.ca.installIntermediate(r.certPem, r.roots);
        for (const s of r.states ?? []) if (s.dc !== this.options.datacenter) this.acceptState(s);
        for (const a of t.addrs) this.addKnownServer(t.dc, a);
        if (opts.address) this.addKnownServer(t.dc, opts.address);
        this.logger.info({ primary: t.dc, addr, discarded: wouldLose.length }, 'joined the federation');
        const gossipAddrs = Array.isArray(r.gossip)
          ? r.gossip.filter((a): a is string => typeof a === 'string' && parseHostPort(a).ok)
          : [];
        return {
          primaryDatacenter: t.dc,
          primaryAddrs: t.addrs,
          roots: r.roots,
          discarded: wouldLose,
          gossipAddrs,
        };
      } finally {
        peer.close('join done');
      }
    }
    throw lastErr;
  }

  // --- catalog export / federation states ---------------------------------------------------

  /** Tell the others now that the local export changed (otherwise it goes every publishInterval). */
  notifyLocalChange(): void {
    this.publishAll();
  }

  private localState(): PublishedState {
    const s: PublishedState = {
      dc: this.options.datacenter,
      export: this.deps.localExport(),
      updatedAt: this.clock.now(),
    };
    if (!this.isPrimary) s.replication = this.replicationSummary();
    return s;
  }

  private replicationSummary(): ReplicationSummary {
    const ks = [...this.kinds.values()];
    const lags = ks.map((k) => k.lagMs).filter((x): x is number => x !== undefined);
    const eq = ks.map((k) => k.hashEqual);
    return {
      index: this.deps.store.replicationCursor(this.options.primaryDatacenter),
      lagMs: lags.length ? Math.max(...lags) : undefined,
      hashesEqual: eq.includes(false) ? false : eq.every((e) => e === true) ? true : undefined,
      lastError: ks.find((k) => k.lastError)?.lastError,
    };
  }

  private publishAll(): void {
    for (const l of this.links.values()) if (l.peer) void this.publishTo(l.peer);
  }

  private async publishTo(peer: Peer): Promise<void> {
    try {
      await peer.request('state.publish', this.localState());
    } catch (err) {
      if (!peer.closed) {
        this.metrics.errors.labels('publish').inc();
        this.logger.debug({ dc: peer.info.dc, err: errorMessage(err) }, 'publishing federation state failed');
      }
    }
  }

  private acceptState(s: PublishedState): void {
    const prev = this.states.get(s.dc);
    if (prev && prev.state.updatedAt > s.updatedAt) return; // an older copy arriving late
    this.states.set(s.dc, { state: s, receivedAt: this.clock.now() });
  }

  /** Every DC's published services and mesh gateways, ours included. */
  federationStates(): FederationStateView[] {
    const now = this.clock.now();
    const out: FederationStateView[] = [];
    const local = this.localState();
    out.push({
      datacenter: local.dc,
      services: local.export.services,
      meshGateways: local.export.meshGateways,
      updatedAt: local.updatedAt,
      receivedAt: now,
      stale: false,
      replication: local.replication,
    });
    for (const [dc, { state, receivedAt }] of [...this.states].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const gossip = this.memberStatus(dc);
      if (gossip === 'failed' || gossip === 'left') continue; // withdrawn
      out.push({
        datacenter: dc,
        services: state.export.services,
        meshGateways: state.export.meshGateways,
        updatedAt: state.updatedAt,
        receivedAt,
        stale: now - receivedAt > this.options.staleAfterMs,
        replication: state.replication,
      });
    }
    return out;
  }

  /** `GET /v1/internal/federation-states/mesh-gateways` body: Consul's health-service shape per DC. */
  meshGatewaysByDc(): Record<string, unknown[]> {
    const out: Record<string, unknown[]> = {};
    for (const s of this.federationStates()) {
      out[s.datacenter] = s.meshGateways.map((g) => {
        const [host, port] = splitAddr(g.wanAddress);
        return {
          Node: { Node: g.node, Datacenter: s.datacenter, Address: host },
          Service: {
            ID: g.service,
            Service: 'mesh-gateway',
            Kind: 'mesh-gateway',
            Address: host,
            Port: port,
            TaggedAddresses: { wan: { Address: host, Port: port } },
            Datacenter: s.datacenter,
          },
          Checks: [
            {
              Node: g.node,
              CheckID: 'serfHealth',
              Status: g.healthy ? 'passing' : 'critical',
              ServiceName: '',
            },
          ],
        };
      });
    }
    return out;
  }

  // --- status --------------------------------------------------------------------------------

  status(): FederationStatus {
    const dcs = new Set<string>([
      this.options.datacenter,
      this.options.primaryDatacenter,
      ...this.knownDcs(),
      ...this.states.keys(),
    ]);
    const now = this.clock.now();
    const rows: DcStatus[] = [];
    for (const dc of [...dcs].sort()) {
      const local = dc === this.options.datacenter;
      const role = dc === this.options.primaryDatacenter ? 'primary' : 'secondary';
      const link = this.links.get(dc);
      const st = this.states.get(dc);
      let rep: ReplicationSummary | undefined;
      if (role === 'secondary') rep = local ? this.replicationSummary() : st?.state.replication;
      if (role === 'primary' && !local && this.isPrimary === false) rep = undefined;
      const incoming =
        this.server?.connectedPeers().some((p) => p.info.dc === dc && p.info.authenticated) ?? false;
      rows.push({
        datacenter: dc,
        role,
        local,
        reachable: local || link?.peer !== undefined || incoming,
        gossip: local ? 'alive' : this.memberStatus(dc),
        replicationIndex:
          role === 'primary'
            ? local
              ? this.deps.store.currentIndex()
              : undefined
            : (rep?.index ?? this.pushedIndex.get(dc)),
        lagMs: rep?.lagMs,
        hashesEqual: rep?.hashesEqual,
        lastError: local ? rep?.lastError : (link?.lastError ?? rep?.lastError),
        stale: !local && (st === undefined || now - st.receivedAt > this.options.staleAfterMs),
        downForMs:
          !local && link?.peer === undefined && link?.downAt !== undefined ? now - link.downAt : undefined,
      });
    }
    return {
      datacenter: this.options.datacenter,
      primaryDatacenter: this.options.primaryDatacenter,
      role: this.isPrimary ? 'primary' : 'secondary',
      datacenters: rows,
      kinds: [...this.kinds.values()].map((k) => ({ ...k })),
    };
  }

  /** Close the channel to a DC (tests and operators cut links with this; it reconnects). */
  cutLink(dc: string): void {
    this.links.get(dc)?.peer?.terminate();
    for (const p of this.server?.connectedPeers() ?? []) if (p.info.dc === dc) p.terminate();
  }

  /** The open channel to a DC, if any (outgoing link). */
  peerFor(dc: string): Peer | undefined {
    return this.links.get(dc)?.peer;
  }

  // --- handlers ------------------------------------------------------------------------------

  private onIncomingPeer(peer: Peer): void {
    if (peer.info.authenticated) this.metrics.reachable.labels(peer.info.dc).set(1);
  }

  private registerHandlers(): void {
    const h = this.handlers;
    h.requests.set('state.publish', (params, peer) => {
      const s = params as PublishedState;
      const problem = publishedStateProblem(params as PublishedState | null);
      if (problem) {
        this.metrics.errors.labels('bad_state').inc();
        throw new MeshError('MESH_ERR_API_BAD_REQUEST', `malformed federation state: ${problem}`);
      }
      if (s.dc !== peer.info.dc)
        throw new MeshError(
          'MESH_ERR_FED_PEER_REJECTED',
          `a server of ${peer.info.dc} may not publish state for ${s.dc}`,
        );
      this.acceptState(s);
      return null;
    });
    // Everything below is served by the primary only.
    const primaryOnly = <T>(fn: () => T): T => {
      if (!this.isPrimary)
        throw new MeshError('MESH_ERR_FED_NOT_PRIMARY', `${this.options.datacenter} is not the primary`);
      return fn();
    };
    h.requests.set('hash', (params) =>
      primaryOnly(() => {
        const p = params as { tables?: unknown; cursor?: unknown } | null;
        const tables = this.filterTables(p?.tables);
        const hashes: Record<string, string> = {};
        for (const t of tables) hashes[t] = this.deps.store.contentHash([t]);
        // Comparable when the asker has every replicated change we have.
        const cursor = typeof p?.cursor === 'number' ? p.cursor : -1;
        const since =
          cursor >= 0 ? this.deps.store.changesSince(cursor, tables, 1) : { tooOld: true as const };
        const comparable = !('tooOld' in since) && since.changes.length === 0;
        return { index: this.deps.store.currentIndex(), hashes, comparable };
      }),
    );
    h.requests.set('forward', (params) => {
      const r = params as ForwardedRequest | null;
      if (!r || typeof r.method !== 'string' || typeof r.path !== 'string' || !r.path.startsWith('/v1/'))
        throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'malformed forwarded request');
      // Reads may be asked of any DC; writes only of the primary (the owner of replicated kinds).
      const serve = r.method === 'GET' ? <T>(fn: () => T): T => fn() : primaryOnly;
      return serve(async () => {
        if (!this.deps.forwardHandler)
          throw new MeshError('MESH_ERR_INTERNAL', 'this server does not accept forwarded requests');
        return this.deps.forwardHandler(r);
      });
    });
    h.requests.set('ca.sign-intermediate', (params, peer) =>
      primaryOnly(async () => {
        const csr = (params as { csr?: unknown } | null)?.csr;
        if (typeof csr !== 'string')
          throw new MeshError('MESH_ERR_CA_CSR_INVALID', 'csr must be a PEM string');
        // The DC comes from the peer's certificate: a DC can only get its own intermediate.
        return this.deps.ca.signIntermediateCsr(csr, peer.info.dc);
      }),
    );
    h.public.add('join.roots');
    h.requests.set('join.roots', () => primaryOnly(() => this.deps.ca.rootsResponse()));
    h.public.add('join');
    h.requests.set('join', (params, peer) => primaryOnly(() => this.serveJoin(params, peer)));
    h.streams.set('replicate', (params, peer, sink) =>
      primaryOnly(() => this.serveReplication(params, peer.info.dc, sink)),
    );
    h.streams.set('roots', (_params, _peer, sink) =>
      primaryOnly(async () => {
        let pending = Promise.resolve();
        const push = (): void => {
          pending = pending.then(() => sink.push(this.deps.ca.rootsResponse())).catch(() => undefined);
        };
        const off = this.deps.ca.onChange((what) => {
          if (what === 'roots') push();
        });
        push();
        await new Promise<void>((resolve) =>
          sink.signal.addEventListener('abort', () => resolve(), { once: true }),
        );
        off();
      }),
    );
  }

  /** Primary: note when replicated changes commit, so batches carry their commit time. */
  private async watchCommits(): Promise<void> {
    let last = this.deps.store.currentIndex();
    this.commitTimes.startAt(last);
    while (!this.ac.signal.aborted) {
      try {
        last = await this.deps.store.watchTables(this.options.replicatedTables, last, this.ac.signal);
      } catch {
        return;
      }
      this.commitTimes.record(last, this.clock.now());
    }
  }

  private filterTables(v: unknown): string[] {
    const allowed = new Set(this.options.replicatedTables);
    if (!Array.isArray(v)) return [...allowed];
    for (const t of v)
      if (typeof t !== 'string' || !allowed.has(t))
        throw new MeshError(
          'MESH_ERR_FED_UNKNOWN_MESSAGE',
          `"${String(t).slice(0, 64)}" is not a replicated kind`,
        );
    return v as string[];
  }

  private async serveJoin(params: unknown, peer: Peer): Promise<unknown> {
    const p = params as { id?: unknown; secret?: unknown; dc?: unknown; csr?: unknown } | null;
    const store = this.requireTokenStore();
    const now = this.clock.now();
    checkJoinToken(store, p?.id as string, p?.secret as string, now);
    const dc = p?.dc;
    const problem = nameProblem('datacenter', dc);
    if (problem) throw new MeshError('MESH_ERR_API_BAD_REQUEST', `joining datacenter: ${problem}`);
    if (dc === this.options.datacenter)
      throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'a datacenter cannot join itself');
    if (dc !== peer.info.dc)
      throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'datacenter differs from the connection');
    if (typeof p?.csr !== 'string')
      throw new MeshError('MESH_ERR_CA_CSR_INVALID', 'csr must be a PEM string');
    const signed = await this.deps.ca.signIntermediateCsr(p.csr, dc as string);
    if (!store.markUsed(p.id as string, now, dc as string))
      throw new MeshError('MESH_ERR_FED_TOKEN_USED', 'join token was already used; create a new one');
    this.logger.info({ dc, tokenId: p.id }, 'datacenter joined with a token');
    const states: PublishedState[] = [this.localState()];
    for (const { state } of this.states.values()) states.push(state);
    // Where the new DC can join the WAN gossip pool: the alive servers, this DC's first.
    const gossip = (this.deps.membership?.members() ?? [])
      .filter((m) => m.status === 'alive' && m.gossipAddr)
      .sort((a, b) => Number(b.dc === this.options.datacenter) - Number(a.dc === this.options.datacenter))
      .slice(0, 8)
      .map((m) => m.gossipAddr!);
    return { certPem: signed.certPem, roots: signed.rootsResponse, states, gossip };
  }

  private async serveReplication(
    params: unknown,
    dc: string,
    sink: { push(b: unknown): Promise<void>; signal: AbortSignal },
  ): Promise<void> {
    const p = params as { cursor?: unknown; tables?: unknown } | null;
    const tables = this.filterTables(p?.tables);
    let cursor =
      typeof p?.cursor === 'number' && Number.isSafeInteger(p.cursor) && p.cursor >= 0 ? p.cursor : 0;
    const store = this.deps.store;
    const sendSnapshot = async (): Promise<void> => {
      const snap = store.snapshot(tables);
      const size = this.options.snapshotChunkRows;
      const parts = Math.max(1, Math.ceil(snap.rows.length / size));
      for (let part = 0; part < parts; part++) {
        const batch: ReplicationBatch = {
          kind: 'snapshot',
          prev: cursor,
          index: snap.index,
          changes: snap.rows.slice(part * size, (part + 1) * size),
          committedAt: this.clock.now(),
          part,
          last: part === parts - 1,
        };
        await sink.push(batch);
      }
      this.logger.info({ dc, index: snap.index, rows: snap.rows.length, parts }, 'replication snapshot sent');
      cursor = snap.index;
      this.pushedIndex.set(dc, cursor);
    };
    if (cursor === 0 || cursor > store.currentIndex()) await sendSnapshot();
    while (!sink.signal.aborted) {
      const r = store.changesSince(cursor, tables, this.options.batchSize);
      if ('tooOld' in r) {
        await sendSnapshot();
        continue;
      }
      if (r.index > cursor) {
        const batch: ReplicationBatch = {
          kind: 'changes',
          prev: cursor,
          index: r.index,
          changes: r.changes,
          committedAt: this.commitTimes.timeOf(r.changes[0]?.index ?? r.index) ?? this.clock.now(),
        };
        await sink.push(batch);
        cursor = r.index;
        this.pushedIndex.set(dc, cursor);
        continue;
      }
      try {
        await store.watchTables(tables, cursor, sink.signal);
      } catch {
        return; // unsubscribed or connection closed
      }
    }
  }
}

/** Why a published federation state is unusable, or undefined when it is well formed. */
function publishedStateProblem(s: PublishedState | null): string | undefined {
  if (!s || typeof s !== 'object') return 'not an object';
  if (typeof s.dc !== 'string' || nameProblem('datacenter', s.dc)) return 'dc is not a datacenter name';
  if (typeof s.updatedAt !== 'number' || !Number.isFinite(s.updatedAt)) return 'updatedAt is not a number';
  const e = s.export;
  if (!e || !Array.isArray(e.services) || !Array.isArray(e.meshGateways))
    return 'export needs services and meshGateways';
  for (const svc of e.services)
    if (
      !svc ||
      typeof svc.name !== 'string' ||
      typeof svc.healthy !== 'number' ||
      typeof svc.total !== 'number'
    )
      return 'a service needs name, healthy and total';
  for (const g of e.meshGateways) {
    if (!g || typeof g.node !== 'string' || typeof g.service !== 'string' || typeof g.healthy !== 'boolean')
      return 'a mesh gateway needs node, service and healthy';
    if (typeof g.wanAddress !== 'string' || !/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(g.wanAddress))
      return 'a mesh gateway wanAddress must be host:port';
  }
  return undefined;
}

function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(addr.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535)
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `"${addr}" is not host:port`);
  return [host, port];
}
