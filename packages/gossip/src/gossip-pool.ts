// GossipPool: the Serf layer (serf 0.9 protocol 5) on top of Memberlist. Owns member status
// (alive/leaving/left/failed), the three Lamport clocks, join/leave intents, tags in node Meta,
// user events with dedupe, queries with acks/responses/filters, internal keyring and conflict
// queries, reap and reconnect. Events go out through an EventEmitter. No wall clock, no bare timers.

import { EventEmitter } from 'node:events';
import { randomInt } from 'node:crypto';
import { MeshError, type Clock, type Logger, type TimerHandle } from '@meshfed/core';
import { UserEventCoalescer } from './coalesce.js';
import { Keyring, parseKey } from './keyring.js';
import {
  Memberlist,
  ipBytes,
  ipString,
  profiles,
  type MemberlistConfig,
  type NodeInfo,
} from './memberlist.js';
import {
  asArr,
  asBig,
  asBool,
  asBytes,
  asMap,
  asStr,
  asUint,
  decode,
  decodeAt,
  encode,
  type Decoded,
  type Encodable,
} from './msgpack.js';
import { NetTransport, type Addr, type Transport } from './transport.js';

export type MemberStatus = 'alive' | 'leaving' | 'left' | 'failed';
const statusCode: Record<MemberStatus | 'none', number> = {
  none: 0,
  alive: 1,
  leaving: 2,
  left: 3,
  failed: 4,
};

export interface Member {
  name: string;
  addr: string;
  port: number;
  tags: Record<string, string>;
  status: MemberStatus;
  protocolMin: number;
  protocolMax: number;
  protocolCur: number;
  delegateMin: number;
  delegateMax: number;
  delegateCur: number;
}

interface MemberState {
  member: Member;
  statusLTime: bigint;
  leaveTime: number;
}

export const SerfMsg = {
  leave: 0,
  join: 1,
  pushPull: 2,
  userEvent: 3,
  query: 4,
  queryResponse: 5,
  conflictResponse: 6,
  keyRequest: 7,
  keyResponse: 8,
  relay: 9,
} as const;

export interface UserEvent {
  ltime: bigint;
  name: string;
  payload: Buffer;
  coalesce: boolean;
}

export interface IncomingQuery {
  ltime: bigint;
  id: number;
  name: string;
  payload: Buffer;
  sourceNode: string;
  /** Answer once, before the deadline; throws MESH_ERR_GOSSIP_QUERY when too late or too large. */
  respond(payload: Buffer): void;
}

export interface QueryOptions {
  filterNodes?: string[];
  filterTags?: Record<string, string>;
  requestAck?: boolean;
  timeoutMs?: number;
  /**
   * Serf's RelayFactor (0–5): each responder also sends its ack and response through this many
   * other random members, so an answer survives a lossy or one-way-broken path back to us.
   */
  relayFactor?: number;
}

export interface QueryResult {
  acks: Set<string>;
  responses: Map<string, Buffer>;
  /** Resolves at the deadline with everything received. */
  done: Promise<{ acks: Set<string>; responses: Map<string, Buffer> }>;
}

export interface KeyOpResult {
  numNodes: number;
  numResp: number;
  numErr: number;
  messages: Record<string, string>;
  keys: Record<string, number>;
  primaryKeys: Record<string, number>;
}

export interface GossipPoolEvents {
  'member-join': [Member];
  'member-leave': [Member];
  'member-failed': [Member];
  'member-update': [Member];
  'member-reap': [Member];
  user: [UserEvent];
  query: [IncomingQuery];
  /**
   * Another node claims our name and the pool's majority sides with it: we stopped gossiping
   * (closed) rather than fight over the name. The owner should exit or restart with a new name.
   */
  'name-conflict-lost': [{ name: string; matching: number; responses: number }];
}

export interface GossipPoolOptions {
  nodeName: string;
  bindAddr?: string;
  bindPort?: number;
  advertise?: Addr;
  profile?: 'lan' | 'wan' | 'local';
  /** Overrides on the profile's timings. */
  memberlist?: Partial<MemberlistConfig>;
  tags?: Record<string, string>;
  /** Base64 keys; the first is primary. Empty = no encryption. */
  keys?: string[];
  /** Serf protocol spoken (2..5). */
  protocol?: number;
  userEventSizeLimit?: number;
  reconnectIntervalMs?: number;
  reconnectTimeoutMs?: number;
  tombstoneTimeoutMs?: number;
  reapIntervalMs?: number;
  broadcastTimeoutMs?: number;
  leavePropagateDelayMs?: number;
  /**
   * Serf's UserCoalescePeriod: user events sent with coalesce=true are held this long (or until
   * `userQuiescentPeriodMs` pass without another) and only the newest per name is delivered.
   * 0 (the default, as in the serf library) delivers every event at once.
   */
  userCoalescePeriodMs?: number;
  /** Serf's UserQuiescentPeriod (default 1 s when coalescing is on). */
  userQuiescentPeriodMs?: number;
}

export interface GossipPoolDeps {
  logger: Logger;
  clock: Clock;
  transport?: Transport;
  random?: () => number;
}

const EVENT_BUFFER = 512;
const QUERY_BUFFER = 512;
const QUERY_SIZE_LIMIT = 1024;
/** Serf caps RelayFactor at 5 (agent and CLI). */
const MAX_RELAY_FACTOR = 5;
const QUERY_RESPONSE_SIZE_LIMIT = 1024;
const META_MAX = 512;
const RECENT_INTENT_MS = 5 * 60_000;

class LamportClock {
  private v = 1n;
  time(): bigint {
    return this.v;
  }
  increment(): bigint {
    return ++this.v;
  }
  witness(t: bigint): void {
    if (t >= this.v) this.v = t + 1n;
  }
}

export function encodeTags(tags: Record<string, string>): Buffer {
  const sorted: Record<string, string> = {};
  for (const k of Object.keys(tags).sort()) sorted[k] = tags[k]!;
  return Buffer.concat([Buffer.from([0xff]), encode(sorted)]);
}

export function decodeTags(meta: Buffer): Record<string, string> {
  if (meta.length === 0) return {};
  if (meta[0] !== 0xff) return { role: meta.toString('utf8') };
  const m = asMap(decode(meta.subarray(1)));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) out[k] = asStr(v);
  return out;
}

const serfMsg = (type: number, v: Encodable): Buffer => Buffer.concat([Buffer.from([type]), encode(v)]);

export class GossipPool extends EventEmitter<GossipPoolEvents> {
  readonly memberlist: Memberlist;
  readonly keys: {
    install(key: string): Promise<KeyOpResult>;
    use(key: string): Promise<KeyOpResult>;
    remove(key: string): Promise<KeyOpResult>;
    list(): Promise<KeyOpResult>;
  };
  readonly stats = { eventsDropped: 0, queriesDropped: 0, messagesMalformed: 0, relaysSent: 0 };

  private readonly opts: GossipPoolOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly keyring: Keyring;
  private tags: Record<string, string>;
  private readonly memberMap = new Map<string, MemberState>();
  private readonly recentIntents = new Map<string, { type: 'join' | 'leave'; ltime: bigint; at: number }>();
  private readonly memberClock = new LamportClock();
  private readonly eventClock = new LamportClock();
  private readonly queryClock = new LamportClock();
  private eventMinTime = 0n;
  private readonly eventBuffer: ({ ltime: bigint; events: { name: Buffer; payload: Buffer }[] } | null)[] =
    new Array(EVENT_BUFFER).fill(null);
  private readonly queryBuffer: ({ ltime: bigint; ids: number[] } | null)[] = new Array(QUERY_BUFFER).fill(
    null,
  );
  private readonly pendingQueries = new Map<
    string,
    { acks: Set<string>; responses: Map<string, Buffer>; deadline: number }
  >();
  private readonly intentQueue: { msg: Buffer; transmits: number; done?: () => void }[] = [];
  private readonly queryQueue: { msg: Buffer; transmits: number }[] = [];
  private readonly eventQueue: { msg: Buffer; transmits: number }[] = [];
  private state: 'alive' | 'leaving' | 'left' | 'shutdown' = 'alive';
  private reapTimer: TimerHandle | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private readonly userCoalescer: UserEventCoalescer;

  constructor(options: GossipPoolOptions, deps: GossipPoolDeps) {
    super();
    this.opts = options;
    this.log = deps.logger;
    this.clock = deps.clock;
    this.random = deps.random ?? Math.random;
    const period = options.userCoalescePeriodMs ?? 0;
    const quiescent = options.userQuiescentPeriodMs ?? 1_000;
    if (!(period >= 0) || !(quiescent > 0))
      throw new MeshError(
        'MESH_ERR_CONFIG_INVALID',
        `userCoalescePeriodMs must be >= 0 and userQuiescentPeriodMs > 0 (got ${period}, ${quiescent})`,
      );
    this.userCoalescer = new UserEventCoalescer(
      { periodMs: period, quiescentMs: quiescent },
      this.clock,
      (e) => this.emit('user', e),
    );
    if (!options.nodeName) throw new MeshError('MESH_ERR_GOSSIP_JOIN', 'a gossip node needs a name');
    this.tags = { ...(options.tags ?? {}) };
    if (encodeTags(this.tags).length > META_MAX)
      throw new MeshError('MESH_ERR_GOSSIP_PACKET', 'encoded tags exceed 512 bytes');
    this.keyring = new Keyring(options.keys ?? []);
    const bind = { host: options.bindAddr ?? '127.0.0.1', port: options.bindPort ?? 7946 };
    const advertise = options.advertise ?? bind;
    const config: MemberlistConfig = { ...profiles[options.profile ?? 'lan'], ...(options.memberlist ?? {}) };
    const proto = options.protocol ?? 5;
    this.memberlist = new Memberlist(
      {
        name: options.nodeName,
        advertise,
        config,
        keyring: this.keyring,
        delegateVersions: [2, 5, proto],
      },
      {
        clock: deps.clock,
        logger: deps.logger,
        transport: deps.transport ?? new NetTransport(bind, deps.clock),
        random: this.random,
      },
    );
    this.memberlist.delegate = {
      nodeMeta: () => encodeTags(this.tags),
      notifyMsg: (m) => this.onMessage(m),
      getBroadcasts: (overhead, limit) => this.getBroadcasts(overhead, limit),
      localState: () => this.localState(),
      mergeRemoteState: (b, join) => this.mergeRemoteState(b, join),
      notifyJoin: (n) => this.onNodeJoin(n),
      notifyLeave: (n) => this.onNodeLeave(n),
      notifyUpdate: (n) => this.onNodeUpdate(n),
      notifyConflict: (a, b) => {
        this.log.error(
          { node: a.name, existing: `${a.host}:${a.port}`, other: `${b.host}:${b.port}` },
          'name conflict',
        );
        if (a.name === this.opts.nodeName) void this.resolveNameConflict();
      },
    };
    this.keys = {
      install: (k) => this.keyQuery('install-key', parseKey(k)),
      use: (k) => this.keyQuery('use-key', parseKey(k)),
      remove: (k) => this.keyQuery('remove-key', parseKey(k)),
      list: () => this.keyQuery('list-keys', undefined),
    };
  }

  get localMember(): Member {
    return this.memberMap.get(this.opts.nodeName)!.member;
  }
  get address(): Addr {
    return this.memberlist.address;
  }

  async start(): Promise<void> {
    await this.memberlist.start();
    const reap = this.opts.reapIntervalMs ?? 15_000;
    this.reapTimer = this.clock.setInterval(() => this.reap(), reap);
    this.reconnectTimer = this.clock.setInterval(
      () => this.reconnect(),
      this.opts.reconnectIntervalMs ?? 30_000,
    );
  }

  async close(): Promise<void> {
    if (this.state === 'shutdown') return;
    this.state = 'shutdown';
    this.clock.clearInterval(this.reapTimer);
    this.clock.clearInterval(this.reconnectTimer);
    this.userCoalescer.flush();
    await this.memberlist.close();
  }

  private resolvingConflict = false;

  /**
   * Serf's name-conflict resolution, run by the node whose name is claimed from another address:
   * ask everyone (`_serf_conflict`, our name as payload) which address they hold for the name; if
   * fewer than a majority of the answers name ours, we are the impostor in their eyes: stop
   * gossiping (close) and emit 'name-conflict-lost'. Otherwise keep going.
   */
  private async resolveNameConflict(): Promise<void> {
    if (this.resolvingConflict || this.state !== 'alive') return;
    this.resolvingConflict = true;
    try {
      const me = this.memberlist.address;
      const { responses } = await this.query('_serf_conflict', this.opts.nodeName, {}).done;
      let matching = 0;
      for (const p of responses.values()) {
        try {
          if (p[0] !== SerfMsg.conflictResponse) continue;
          const d = asMap(decode(p.subarray(1)));
          if (ipString(asBytes(d['Addr']) ?? Buffer.alloc(0)) === me.host && asUint(d['Port']) === me.port)
            matching++;
        } catch {
          // a malformed answer counts for nobody
        }
      }
      const majority = Math.floor(responses.size / 2) + 1;
      if (matching >= majority) {
        this.log.info({ matching, responses: responses.size }, 'name conflict resolved in our favour');
        return;
      }
      this.log.error(
        { name: this.opts.nodeName, matching, responses: responses.size },
        'another node holds our name in the majority view: leaving the gossip pool; restart with a unique node name',
      );
      await this.close();
      this.emit('name-conflict-lost', { name: this.opts.nodeName, matching, responses: responses.size });
    } finally {
      this.resolvingConflict = false;
    }
  }

  /** Join through any of the addresses; then gossip a join intent. */
  async join(addrs: readonly (string | Addr)[]): Promise<number> {
    const list = addrs.map((a) => (typeof a === 'string' ? parseHostPort(a) : a));
    const { joined, errors } = await this.memberlist.join(list);
    if (joined === 0)
      throw new MeshError('MESH_ERR_GOSSIP_JOIN', `could not join the gossip pool: ${errors.join('; ')}`, {
        details: { errors },
      });
    this.broadcastJoin(this.memberClock.time());
    return joined;
  }

  /** Graceful leave: leave intent first, then memberlist's dead(self), then a short propagation delay. */
  async leave(): Promise<void> {
    if (this.state !== 'alive') return;
    this.state = 'leaving';
    const ltime = this.memberClock.time();
    this.memberClock.increment();
    const msg = { LTime: ltime, Node: this.opts.nodeName, Prune: false };
    this.handleLeaveIntent(ltime, this.opts.nodeName);
    const timeout = this.opts.broadcastTimeoutMs ?? 5_000;
    if (this.hasAliveMembers()) {
      await new Promise<void>((resolve) => {
        const t = this.clock.setTimeout(resolve, timeout);
        this.intentQueue.push({
          msg: serfMsg(SerfMsg.leave, msg),
          transmits: 0,
          done: () => {
            this.clock.clearTimeout(t);
            resolve();
          },
        });
      });
    }
    await this.memberlist.leave(timeout);
    await new Promise<void>((r) => this.clock.setTimeout(r, this.opts.leavePropagateDelayMs ?? 1_000));
    this.state = 'left';
  }

  members(): Member[] {
    return [...this.memberMap.values()].map((m) => ({ ...m.member, tags: { ...m.member.tags } }));
  }

  async setTags(tags: Record<string, string>): Promise<void> {
    if (encodeTags(tags).length > META_MAX)
      throw new MeshError('MESH_ERR_GOSSIP_PACKET', 'encoded tags exceed 512 bytes');
    this.tags = { ...tags };
    this.memberlist.updateNode();
    return Promise.resolve();
  }

  /** Broadcast a user event; name + payload at most userEventSizeLimit (512) bytes. */
  userEvent(name: string, payload: Buffer | string, coalesce = true): void {
    const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const limit = this.opts.userEventSizeLimit ?? 512;
    if (Buffer.byteLength(name) + p.length > limit)
      throw new MeshError('MESH_ERR_GOSSIP_PACKET', `user event exceeds the ${limit}-byte limit`, {
        details: { size: Buffer.byteLength(name) + p.length, limit },
      });
    const ltime = this.eventClock.time();
    this.eventClock.increment();
    const raw = serfMsg(SerfMsg.userEvent, { CC: coalesce, LTime: ltime, Name: name, Payload: p });
    if (raw.length > limit + 64 && raw.length > 9 * 1024)
      throw new MeshError('MESH_ERR_GOSSIP_PACKET', 'user event too large');
    this.handleUserEvent(ltime, Buffer.from(name), p, coalesce);
    this.eventQueue.push({ msg: raw, transmits: 0 });
  }

  /** Send a query to the pool; the local node answers too (as serf does). */
  query(name: string, payload: Buffer | string, opts: QueryOptions = {}): QueryResult {
    const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const relayFactor = opts.relayFactor ?? 0;
    if (!Number.isInteger(relayFactor) || relayFactor < 0 || relayFactor > MAX_RELAY_FACTOR)
      throw new MeshError(
        'MESH_ERR_GOSSIP_QUERY',
        `relayFactor must be an integer 0-${MAX_RELAY_FACTOR}, got ${String(opts.relayFactor)}`,
      );
    const n = this.memberlist.numNodes();
    const gossipMs = this.memberlist.config.gossipIntervalMs;
    const timeoutMs = opts.timeoutMs ?? gossipMs * 16 * Math.ceil(Math.log10(n + 1));
    const filters: Buffer[] = [];
    if (opts.filterNodes) filters.push(Buffer.concat([Buffer.from([0]), encode(opts.filterNodes)]));
    for (const [tag, expr] of Object.entries(opts.filterTags ?? {}))
      filters.push(Buffer.concat([Buffer.from([1]), encode({ Expr: expr, Tag: tag })]));
    const ltime = this.queryClock.time();
    const id = randomInt(0, 0x7fffffff);
    const me = this.memberlist.address;
    const q = {
      Addr: ipBytes(me.host),
      Filters: filters,
      Flags: opts.requestAck ? 1 : 0,
      ID: id,
      LTime: ltime,
      Name: name,
      Payload: p,
      Port: me.port,
      RelayFactor: relayFactor,
      SourceNode: this.opts.nodeName,
      Timeout: BigInt(timeoutMs) * 1_000_000n,
    };
    const raw = serfMsg(SerfMsg.query, q);
    if (raw.length > QUERY_SIZE_LIMIT)
      throw new MeshError('MESH_ERR_GOSSIP_QUERY', `query exceeds the ${QUERY_SIZE_LIMIT}-byte limit`);
    const acks = new Set<string>();
    const responses = new Map<string, Buffer>();
    const key = `${ltime}:${id}`;
    this.pendingQueries.set(key, { acks, responses, deadline: this.clock.monotonic() + timeoutMs });
    const done = new Promise<{ acks: Set<string>; responses: Map<string, Buffer> }>((resolve) =>
      this.clock.setTimeout(() => {
        this.pendingQueries.delete(key);
        resolve({ acks, responses });
      }, timeoutMs),
    );
    this.handleQuery(this.decodeQuery(asMap(decode(raw.subarray(1)))));
    this.queryClock.increment();
    this.queryQueue.push({ msg: raw, transmits: 0 });
    return { acks, responses, done };
  }

  // ---- memberlist delegate -------------------------------------------------------------------

  private retransmitLimit(): number {
    return this.memberlist.config.retransmitMult * Math.ceil(Math.log10(this.memberlist.numNodes() + 1));
  }

  private getBroadcasts(overhead: number, limit: number): Buffer[] {
    const out: Buffer[] = [];
    let used = 0;
    const max = Math.max(1, this.retransmitLimit());
    for (const q of [this.intentQueue, this.queryQueue, this.eventQueue] as {
      msg: Buffer;
      transmits: number;
      done?: () => void;
    }[][]) {
      q.sort((a, b) => a.transmits - b.transmits);
      for (let i = 0; i < q.length;) {
        const it = q[i]!;
        if (used + it.msg.length + overhead > limit) {
          i++;
          continue;
        }
        used += it.msg.length + overhead;
        out.push(it.msg);
        it.transmits++;
        if (it.transmits >= max) {
          q.splice(i, 1);
          it.done?.();
        } else i++;
      }
      if (q.length > 4096) q.splice(0, q.length - 4096);
    }
    return out;
  }

  private onMessage(m: Buffer): void {
    if (m.length < 1) return;
    try {
      const t = m[0]!;
      const body = m.subarray(1);
      switch (t) {
        case SerfMsg.join: {
          const d = asMap(decode(body));
          if (this.handleJoinIntent(asBig(d['LTime']), asStr(d['Node'])))
            this.intentQueue.push({ msg: Buffer.from(m), transmits: 0 });
          return;
        }
        case SerfMsg.leave: {
          const d = asMap(decode(body));
          if (this.handleLeaveIntent(asBig(d['LTime']), asStr(d['Node'])))
            this.intentQueue.push({ msg: Buffer.from(m), transmits: 0 });
          return;
        }
        case SerfMsg.userEvent: {
          const d = asMap(decode(body));
          const ok = this.handleUserEvent(
            asBig(d['LTime']),
            asBytes(d['Name']) ?? Buffer.alloc(0),
            asBytes(d['Payload']) ?? Buffer.alloc(0),
            asBool(d['CC']),
          );
          if (ok) this.eventQueue.push({ msg: Buffer.from(m), transmits: 0 });
          return;
        }
        case SerfMsg.query: {
          const q = this.decodeQuery(asMap(decode(body)));
          if (this.handleQuery(q)) this.queryQueue.push({ msg: Buffer.from(m), transmits: 0 });
          return;
        }
        case SerfMsg.queryResponse: {
          const d = asMap(decode(body));
          const key = `${asBig(d['LTime'])}:${asUint(d['ID'])}`;
          const pq = this.pendingQueries.get(key);
          if (!pq) return;
          const from = asStr(d['From']);
          if ((asUint(d['Flags']) & 1) === 1) pq.acks.add(from);
          else if (!pq.responses.has(from)) pq.responses.set(from, asBytes(d['Payload']) ?? Buffer.alloc(0));
          return;
        }
        case SerfMsg.relay: {
          // relayHeader{DestAddr{IP,Port,Zone},DestName} then the inner message: forward it.
          const [h, end] = decodeAt(body, 0);
          const dest = asMap(asMap(h)['DestAddr']);
          const host = ipString(asBytes(dest['IP']) ?? Buffer.alloc(0));
          if (host)
            this.memberlist.sendUser({ host, port: asUint(dest['Port']) }, Buffer.from(body.subarray(end)));
          return;
        }
        default:
          this.stats.messagesMalformed++;
      }
    } catch (err) {
      this.stats.messagesMalformed++;
      this.log.debug({ err: (err as Error).message }, 'dropped malformed serf message');
    }
  }

  private localState(): Buffer {
    const statusLTimes: Record<string, bigint> = {};
    const left: string[] = [];
    for (const [name, m] of this.memberMap) {
      statusLTimes[name] = m.statusLTime;
      if (m.member.status === 'left') left.push(name);
    }
    const events: Encodable[] = this.eventBuffer.map((e) =>
      e === null
        ? null
        : { Events: e.events.map((x) => ({ Name: x.name, Payload: x.payload })), LTime: e.ltime },
    );
    return serfMsg(SerfMsg.pushPull, {
      EventLTime: this.eventClock.time(),
      Events: events,
      LTime: this.memberClock.time(),
      LeftMembers: left,
      QueryLTime: this.queryClock.time(),
      StatusLTimes: statusLTimes,
    });
  }

  private mergeRemoteState(buf: Buffer, join: boolean): void {
    if (buf[0] !== SerfMsg.pushPull) return;
    let d: ReturnType<typeof asMap>;
    try {
      d = asMap(decode(buf.subarray(1)));
    } catch {
      this.stats.messagesMalformed++;
      return;
    }
    const lt = asBig(d['LTime']);
    if (lt > 0n) this.memberClock.witness(lt - 1n);
    const elt = asBig(d['EventLTime']);
    if (elt > 0n) this.eventClock.witness(elt - 1n);
    const qlt = asBig(d['QueryLTime']);
    if (qlt > 0n) this.queryClock.witness(qlt - 1n);
    const left = new Set(asArr(d['LeftMembers']).map((x) => asStr(x)));
    const st = asMap(d['StatusLTimes']);
    for (const [name, v] of Object.entries(st)) {
      const t = asBig(v);
      if (left.has(name)) this.handleLeaveIntent(t + 1n, name);
      else this.handleJoinIntent(t, name);
    }
    // the agent's default: when joining, ignore events older than the remote event clock
    if (join && elt > this.eventMinTime) this.eventMinTime = elt;
    for (const e of asArr(d['Events'])) {
      if (e === null) continue;
      const em = asMap(e);
      const ltime = asBig(em['LTime']);
      for (const ev of asArr(em['Events'])) {
        const x = asMap(ev);
        this.handleUserEvent(
          ltime,
          asBytes(x['Name']) ?? Buffer.alloc(0),
          asBytes(x['Payload']) ?? Buffer.alloc(0),
          false,
        );
      }
    }
  }

  // ---- member status -------------------------------------------------------------------------

  private memberFrom(n: NodeInfo, status: MemberStatus): Member {
    return {
      name: n.name,
      addr: n.host,
      port: n.port,
      tags: safeTags(n.meta),
      status,
      protocolMin: n.vsn[0] ?? 0,
      protocolMax: n.vsn[1] ?? 0,
      protocolCur: n.vsn[2] ?? 0,
      delegateMin: n.vsn[3] ?? 0,
      delegateMax: n.vsn[4] ?? 0,
      delegateCur: n.vsn[5] ?? 0,
    };
  }

  private onNodeJoin(n: NodeInfo): void {
    let ms = this.memberMap.get(n.name);
    if (!ms) {
      ms = { member: this.memberFrom(n, 'alive'), statusLTime: 0n, leaveTime: 0 };
      const j = this.recentIntent(n.name, 'join');
      if (j !== undefined) ms.statusLTime = j;
      const l = this.recentIntent(n.name, 'leave');
      if (l !== undefined && l > ms.statusLTime) {
        ms.member.status = 'leaving';
        ms.statusLTime = l;
      }
      this.memberMap.set(n.name, ms);
    } else {
      ms.member = this.memberFrom(n, 'alive');
      ms.leaveTime = 0;
    }
    this.emit('member-join', { ...ms.member });
  }

  private onNodeLeave(n: NodeInfo): void {
    const ms = this.memberMap.get(n.name);
    if (!ms) return;
    let ev: 'member-leave' | 'member-failed';
    if (ms.member.status === 'leaving') {
      ms.member.status = 'left';
      ev = 'member-leave';
    } else if (ms.member.status === 'alive') {
      ms.member.status = 'failed';
      ev = 'member-failed';
    } else return;
    ms.leaveTime = this.clock.monotonic();
    const status = ms.member.status;
    ms.member = { ...this.memberFrom(n, status) };
    this.emit(ev, { ...ms.member });
  }

  private onNodeUpdate(n: NodeInfo): void {
    const ms = this.memberMap.get(n.name);
    if (!ms) return;
    ms.member = this.memberFrom(n, ms.member.status);
    this.emit('member-update', { ...ms.member });
  }

  private recentIntent(node: string, type: 'join' | 'leave'): bigint | undefined {
    const r = this.recentIntents.get(`${type}:${node}`);
    if (!r || this.clock.monotonic() - r.at > RECENT_INTENT_MS) return undefined;
    return r.ltime;
  }

  private upsertIntent(node: string, type: 'join' | 'leave', ltime: bigint): boolean {
    const key = `${type}:${node}`;
    const r = this.recentIntents.get(key);
    if (r && r.ltime >= ltime) return false;
    this.recentIntents.set(key, { type, ltime, at: this.clock.monotonic() });
    return true;
  }

  private broadcastJoin(ltime: bigint): void {
    this.memberClock.witness(ltime);
    this.handleJoinIntent(ltime, this.opts.nodeName);
    this.intentQueue.push({
      msg: serfMsg(SerfMsg.join, { LTime: ltime, Node: this.opts.nodeName }),
      transmits: 0,
    });
  }

  private handleJoinIntent(ltime: bigint, node: string): boolean {
    this.memberClock.witness(ltime);
    const ms = this.memberMap.get(node);
    if (!ms) return this.upsertIntent(node, 'join', ltime);
    if (ltime <= ms.statusLTime) return false;
    ms.statusLTime = ltime;
    if (ms.member.status === 'leaving') ms.member.status = 'alive';
    return true;
  }

  private handleLeaveIntent(ltime: bigint, node: string): boolean {
    this.memberClock.witness(ltime);
    const ms = this.memberMap.get(node);
    if (!ms) return this.upsertIntent(node, 'leave', ltime);
    if (ltime <= ms.statusLTime) return false;
    if (node === this.opts.nodeName && this.state === 'alive') {
      this.broadcastJoin(this.memberClock.time());
      return false;
    }
    if (ms.member.status === 'alive') {
      ms.member.status = 'leaving';
      ms.statusLTime = ltime;
      return true;
    }
    if (ms.member.status === 'failed') {
      ms.member.status = 'left';
      ms.statusLTime = ltime;
      this.emit('member-leave', { ...ms.member });
      return true;
    }
    return false;
  }

  private hasAliveMembers(): boolean {
    for (const [name, m] of this.memberMap)
      if (name !== this.opts.nodeName && m.member.status === 'alive') return true;
    return false;
  }

  private reap(): void {
    const now = this.clock.monotonic();
    const reconnectTimeout = this.opts.reconnectTimeoutMs ?? 24 * 3600_000;
    const tombstone = this.opts.tombstoneTimeoutMs ?? 24 * 3600_000;
    for (const [name, m] of this.memberMap) {
      const limit =
        m.member.status === 'failed' ? reconnectTimeout : m.member.status === 'left' ? tombstone : -1;
      if (limit >= 0 && now - m.leaveTime > limit) {
        this.memberMap.delete(name);
        this.emit('member-reap', { ...m.member });
      }
    }
    for (const [k, r] of this.recentIntents) if (now - r.at > RECENT_INTENT_MS) this.recentIntents.delete(k);
  }

  private reconnect(): void {
    const failed = [...this.memberMap.values()].filter((m) => m.member.status === 'failed');
    if (failed.length === 0 || this.state !== 'alive') return;
    const m = failed[Math.floor(this.random() * failed.length)]!;
    void this.memberlist.join([{ host: m.member.addr, port: m.member.port }]);
  }

  // ---- user events ---------------------------------------------------------------------------

  private handleUserEvent(ltime: bigint, name: Buffer, payload: Buffer, cc: boolean): boolean {
    this.eventClock.witness(ltime);
    const cur = this.eventClock.time();
    if (ltime < this.eventMinTime) return false;
    if (cur > BigInt(EVENT_BUFFER) && ltime < cur - BigInt(EVENT_BUFFER)) {
      this.stats.eventsDropped++;
      return false;
    }
    const idx = Number(ltime % BigInt(EVENT_BUFFER));
    let seen = this.eventBuffer[idx];
    if (seen && seen.ltime === ltime) {
      if (seen.events.some((e) => e.name.equals(name) && e.payload.equals(payload))) return false;
    } else {
      seen = { ltime, events: [] };
      this.eventBuffer[idx] = seen;
    }
    seen.events.push({ name: Buffer.from(name), payload: Buffer.from(payload) });
    this.userCoalescer.handle({
      ltime,
      name: name.toString('utf8'),
      payload: Buffer.from(payload),
      coalesce: cc,
    });
    return true;
  }

  // ---- queries -------------------------------------------------------------------------------

  private decodeQuery(d: ReturnType<typeof asMap>): Query {
    return {
      ltime: asBig(d['LTime']),
      id: asUint(d['ID']),
      addr: asBytes(d['Addr']) ?? Buffer.alloc(0),
      port: asUint(d['Port']),
      sourceNode: asStr(d['SourceNode']),
      filters: asArr(d['Filters']).map((f) => asBytes(f) ?? Buffer.alloc(0)),
      flags: asUint(d['Flags']),
      timeoutNs: asBig(d['Timeout']),
      name: asStr(d['Name']),
      payload: asBytes(d['Payload']) ?? Buffer.alloc(0),
      relayFactor: Math.min(MAX_RELAY_FACTOR, asUint(d['RelayFactor'] ?? 0)),
    };
  }

  private shouldProcess(filters: Buffer[]): boolean {
    for (const f of filters) {
      if (f.length < 1) return false;
      const body = decode(f.subarray(1));
      if (f[0] === 0) {
        const names = asArr(body).map((x) => asStr(x));
        if (!names.includes(this.opts.nodeName)) return false;
      } else if (f[0] === 1) {
        const m = asMap(body);
        const tag = asStr(m['Tag']);
        const v = this.tags[tag];
        let re: RegExp;
        try {
          re = new RegExp(asStr(m['Expr']));
        } catch {
          return false;
        }
        if (v === undefined || !re.test(v)) return false;
      } else return false;
    }
    return true;
  }

  private handleQuery(q: Query): boolean {
    this.queryClock.witness(q.ltime);
    const cur = this.queryClock.time();
    if (cur > BigInt(QUERY_BUFFER) && q.ltime < cur - BigInt(QUERY_BUFFER)) {
      this.stats.queriesDropped++;
      return false;
    }
    const idx = Number(q.ltime % BigInt(QUERY_BUFFER));
    let seen = this.queryBuffer[idx];
    if (seen && seen.ltime === q.ltime) {
      if (seen.ids.includes(q.id)) return false;
    } else {
      seen = { ltime: q.ltime, ids: [] };
      this.queryBuffer[idx] = seen;
    }
    seen.ids.push(q.id);
    const rebroadcast = (q.flags & 2) === 0;
    let ok: boolean;
    try {
      ok = this.shouldProcess(q.filters);
    } catch {
      ok = false;
    }
    if (!ok) return rebroadcast;
    const host = ipString(q.addr);
    const to = host ? { host, port: q.port } : undefined;
    if ((q.flags & 1) === 1 && to)
      this.sendResponse(
        to,
        { Flags: 1, From: this.opts.nodeName, ID: q.id, LTime: q.ltime, Payload: null },
        q.relayFactor,
        q.sourceNode,
      );
    const deadline = this.clock.monotonic() + Number(q.timeoutNs / 1_000_000n);
    let answered = false;
    const respond = (payload: Buffer): void => {
      if (answered) throw new MeshError('MESH_ERR_GOSSIP_QUERY', 'query already answered');
      if (this.clock.monotonic() > deadline)
        throw new MeshError('MESH_ERR_GOSSIP_QUERY', 'query deadline passed');
      const msg = { Flags: 0, From: this.opts.nodeName, ID: q.id, LTime: q.ltime, Payload: payload };
      if (serfMsg(SerfMsg.queryResponse, msg).length > QUERY_RESPONSE_SIZE_LIMIT)
        throw new MeshError(
          'MESH_ERR_GOSSIP_QUERY',
          `response exceeds the ${QUERY_RESPONSE_SIZE_LIMIT}-byte limit`,
        );
      answered = true;
      if (to) this.sendResponse(to, msg, q.relayFactor, q.sourceNode);
    };
    if (q.name.startsWith('_serf_')) this.internalQuery(q, respond);
    else
      this.emit('query', {
        ltime: q.ltime,
        id: q.id,
        name: q.name,
        payload: q.payload,
        sourceNode: q.sourceNode,
        respond,
      });
    return rebroadcast;
  }

  private sendResponse(to: Addr, msg: Encodable, relayFactor = 0, destName = ''): void {
    const raw = serfMsg(SerfMsg.queryResponse, msg);
    const me = this.memberlist.address;
    // our own query: deliver locally instead of over the network
    if (to.host === me.host && to.port === me.port) return this.onMessage(raw);
    this.memberlist.sendUser(to, raw);
    if (relayFactor > 0) this.relayResponse(to, destName, raw, relayFactor);
  }

  /**
   * Serf's query relays: the same response, wrapped in a relay header naming the querier, sent to
   * `factor` random alive members other than us that speak memberlist protocol ≥ 5 (the querier
   * may be among them, as in serf); each forwards it as a user message, and the querier keeps the
   * first copy per responder. As serf, skipped when there are fewer than factor + 1 members or the
   * wrapped message exceeds the response size limit.
   */
  private relayResponse(to: Addr, destName: string, inner: Buffer, factor: number): void {
    const members = this.members();
    if (members.length < factor + 1) return;
    const candidates = members.filter(
      (m) => m.status === 'alive' && m.protocolMax >= 5 && m.name !== this.opts.nodeName,
    );
    const header = encode({
      DestAddr: { IP: ipBytes(to.host), Port: to.port, Zone: '' },
      DestName: destName,
    });
    const relayed = Buffer.concat([Buffer.from([SerfMsg.relay]), header, inner]);
    if (relayed.length > QUERY_RESPONSE_SIZE_LIMIT) return;
    for (let i = 0; i < factor && candidates.length > 0; i++) {
      const [m] = candidates.splice(Math.floor(this.random() * candidates.length), 1);
      this.memberlist.sendUser({ host: m!.addr, port: m!.port }, relayed);
      this.stats.relaysSent++;
    }
  }

  private internalQuery(q: Query, respond: (b: Buffer) => void): void {
    const op = q.name.slice('_serf_'.length);
    if (op === 'ping') return;
    if (op === 'conflict') {
      const name = q.payload.toString('utf8');
      if (name === this.opts.nodeName) return;
      const m = this.memberMap.get(name);
      if (!m) return;
      const mm = m.member;
      respond(
        serfMsg(SerfMsg.conflictResponse, {
          Addr: ipBytes(mm.addr),
          DelegateCur: mm.delegateCur,
          DelegateMax: mm.delegateMax,
          DelegateMin: mm.delegateMin,
          Name: mm.name,
          Port: mm.port,
          ProtocolCur: mm.protocolCur,
          ProtocolMax: mm.protocolMax,
          ProtocolMin: mm.protocolMin,
          Status: statusCode[mm.status],
          Tags: mm.tags,
        }),
      );
      return;
    }
    if (!['install-key', 'use-key', 'remove-key', 'list-keys'].includes(op)) return;
    const resp: { Keys: string[] | null; Message: string; PrimaryKey: string; Result: boolean } = {
      Keys: null,
      Message: '',
      PrimaryKey: '',
      Result: false,
    };
    try {
      let key: Buffer | undefined;
      if (q.payload.length > 0 && q.payload[0] === SerfMsg.keyRequest)
        key = asBytes(asMap(decode(q.payload.subarray(1)))['Key']);
      if (op === 'list-keys') {
        resp.Keys = this.keyring.list();
        resp.PrimaryKey = this.keyring.primary?.toString('base64') ?? '';
      } else {
        if (!key) throw new Error('missing key');
        if (op === 'install-key') this.keyring.add(key);
        else if (op === 'use-key') this.keyring.use(key);
        else this.keyring.remove(key);
      }
      resp.Result = true;
    } catch (err) {
      resp.Message = (err as Error).message;
    }
    try {
      respond(serfMsg(SerfMsg.keyResponse, resp));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'key query response failed');
    }
  }

  private async keyQuery(op: string, key: Buffer | undefined): Promise<KeyOpResult> {
    const payload = serfMsg(SerfMsg.keyRequest, { Key: key ?? null });
    const numNodes = [...this.memberMap.values()].filter((m) => m.member.status === 'alive').length;
    const r = this.query(`_serf_${op}`, payload, {});
    const { responses } = await r.done;
    const out: KeyOpResult = { numNodes, numResp: 0, numErr: 0, messages: {}, keys: {}, primaryKeys: {} };
    for (const [from, p] of responses) {
      out.numResp++;
      try {
        if (p[0] !== SerfMsg.keyResponse) throw new Error('bad response');
        const d = asMap(decode(p.subarray(1)));
        if (!asBool(d['Result'])) {
          out.numErr++;
          out.messages[from] = asStr(d['Message']);
        }
        for (const k of asArr(d['Keys'])) out.keys[asStr(k)] = (out.keys[asStr(k)] ?? 0) + 1;
        const pk = asStr(d['PrimaryKey']);
        if (pk) out.primaryKeys[pk] = (out.primaryKeys[pk] ?? 0) + 1;
      } catch {
        out.numErr++;
        out.messages[from] = 'malformed response';
      }
    }
    return out;
  }
}

interface Query {
  ltime: bigint;
  id: number;
  addr: Buffer;
  port: number;
  sourceNode: string;
  filters: Buffer[];
  flags: number;
  timeoutNs: bigint;
  name: string;
  payload: Buffer;
  relayFactor: number;
}

function safeTags(meta: Buffer): Record<string, string> {
  try {
    return decodeTags(meta);
  } catch {
    return {};
  }
}

export function parseHostPort(s: string, defaultPort = 7946): Addr {
  const i = s.lastIndexOf(':');
  if (i < 0) return { host: s, port: defaultPort };
  const port = Number(s.slice(i + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new MeshError('MESH_ERR_GOSSIP_JOIN', `invalid join address ${JSON.stringify(s)}`);
  return { host: s.slice(0, i), port };
}

export type { Decoded };
