// memberlist: SWIM membership with the Lifeguard extensions, wire-compatible with HashiCorp
// memberlist 0.2.x (protocol 2, understands 1..5). Owns the node table, the probe loop, gossip,
// push-pull and leave. It never interprets user messages or Meta: those belong to its delegate
// (the serf layer). It never reads the wall clock or bare timers: everything goes through Clock.

import { isIPv4 } from 'node:net';
import type { Clock, Logger, TimerHandle } from '@meshfed/core';
import { BroadcastQueue } from './broadcast-queue.js';
import type { Keyring } from './keyring.js';
import { ENCRYPT_OVERHEAD } from './keyring.js';
import {
  addCrc,
  checkCrc,
  compressMsg,
  decodeAck,
  decodeAlive,
  decodeBody,
  decodeIndirect,
  decodePing,
  decodeSuspect,
  decompressBody,
  encodeAck,
  encodeAlive,
  encodeDead,
  encodeErr,
  encodeIndirect,
  encodeNack,
  encodePing,
  encodePushPull,
  encodeSuspect,
  makeCompound,
  MAX_UDP_PACKET,
  META_MAX,
  MsgType,
  NodeStateCode,
  parseStream,
  splitCompound,
  wrapStream,
  type Alive,
  type Dead,
  type PushNodeState,
  type StreamMsg,
  type Suspect,
} from './wire.js';
import { addrKey, type Addr, type StreamConn, type Transport } from './transport.js';

export type NodeStatus = 'alive' | 'suspect' | 'dead' | 'left';

export interface NodeInfo {
  name: string;
  host: string;
  port: number;
  meta: Buffer;
  incarnation: number;
  state: NodeStatus;
  /** [pmin, pmax, pcur, dmin, dmax, dcur] */
  vsn: number[];
}

interface NodeEntry extends NodeInfo {
  addr: Buffer;
  stateChange: number;
}

export interface MemberlistConfig {
  tcpTimeoutMs: number;
  indirectChecks: number;
  retransmitMult: number;
  suspicionMult: number;
  suspicionMaxTimeoutMult: number;
  pushPullIntervalMs: number;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  gossipIntervalMs: number;
  gossipNodes: number;
  gossipToTheDeadMs: number;
  awarenessMaxMultiplier: number;
  enableCompression: boolean;
  udpBufferSize: number;
  /**
   * Lifeguard: local health (LHA-Probe), suspicion timeouts shrinking with confirmations
   * (LHA-Suspicion) and the buddy system. Off = plain SWIM, for comparison only.
   */
  lifeguard: boolean;
  gossipVerifyIncoming: boolean;
}

const base = {
  awarenessMaxMultiplier: 8,
  enableCompression: true,
  udpBufferSize: 1400,
  lifeguard: true,
  gossipVerifyIncoming: true,
};

/** memberlist's DefaultLANConfig / DefaultWANConfig / DefaultLocalConfig timings. */
export const profiles: Readonly<Record<'lan' | 'wan' | 'local', Readonly<MemberlistConfig>>> = {
  lan: {
    ...base,
    tcpTimeoutMs: 10_000,
    indirectChecks: 3,
    retransmitMult: 4,
    suspicionMult: 4,
    suspicionMaxTimeoutMult: 6,
    pushPullIntervalMs: 30_000,
    probeIntervalMs: 1_000,
    probeTimeoutMs: 500,
    gossipIntervalMs: 200,
    gossipNodes: 3,
    gossipToTheDeadMs: 30_000,
  },
  wan: {
    ...base,
    tcpTimeoutMs: 30_000,
    indirectChecks: 3,
    retransmitMult: 4,
    suspicionMult: 6,
    suspicionMaxTimeoutMult: 6,
    pushPullIntervalMs: 60_000,
    probeIntervalMs: 5_000,
    probeTimeoutMs: 3_000,
    gossipIntervalMs: 500,
    gossipNodes: 4,
    gossipToTheDeadMs: 60_000,
  },
  local: {
    ...base,
    tcpTimeoutMs: 1_000,
    indirectChecks: 1,
    retransmitMult: 2,
    suspicionMult: 3,
    suspicionMaxTimeoutMult: 6,
    pushPullIntervalMs: 15_000,
    probeIntervalMs: 1_000,
    probeTimeoutMs: 200,
    gossipIntervalMs: 100,
    gossipNodes: 3,
    gossipToTheDeadMs: 15_000,
  },
};

/** What the layer above (serf) plugs in; memberlist's Delegate + EventDelegate + PingDelegate. */
export interface MemberlistDelegate {
  nodeMeta(limit: number): Buffer;
  notifyMsg(msg: Buffer, from: Addr): void;
  getBroadcasts(overhead: number, limit: number): Buffer[];
  localState(join: boolean): Buffer;
  mergeRemoteState(buf: Buffer, join: boolean): void;
  notifyJoin(n: NodeInfo): void;
  notifyLeave(n: NodeInfo): void;
  notifyUpdate(n: NodeInfo): void;
  notifyConflict?(existing: NodeInfo, other: NodeInfo): void;
  ackPayload?(): Buffer | undefined;
}

export interface MemberlistOptions {
  name: string;
  /** Address advertised to peers (must be an IPv4 literal). */
  advertise: Addr;
  config: MemberlistConfig;
  keyring?: Keyring | undefined;
  /** Delegate protocol range [min, max, cur]; serf sends [2, 5, 5]. */
  delegateVersions?: [number, number, number];
}

export interface MemberlistDeps {
  clock: Clock;
  logger: Logger;
  transport: Transport;
  random?: () => number;
}

/** Counters a user would look at when packets go missing. */
export interface MemberlistStats {
  packetsIn: number;
  packetsOut: number;
  bytesOut: number;
  dropped: Record<string, number>;
  probes: number;
  probeFailures: number;
  suspicionsRaised: number;
  deathsDeclared: number;
  refutes: number;
  streamsIn: number;
  streamErrors: number;
}

const PROTOCOL_VERSION = [1, 5, 2] as const;

interface Suspicion {
  k: number;
  n: number;
  min: number;
  max: number;
  start: number;
  from: Set<string>;
  timer: TimerHandle | undefined;
  fire: () => void;
}

export class Memberlist {
  readonly name: string;
  readonly stats: MemberlistStats = {
    packetsIn: 0,
    packetsOut: 0,
    bytesOut: 0,
    dropped: {},
    probes: 0,
    probeFailures: 0,
    suspicionsRaised: 0,
    deathsDeclared: 0,
    refutes: 0,
    streamsIn: 0,
    streamErrors: 0,
  };
  delegate: MemberlistDelegate | undefined;
  /**
   * Optional observer of this node's own failure-detector decisions: 'suspect' when one of its
   * probes failed and it raised a suspicion, 'dead' when its suspicion timer expired. For
   * simulations that attribute false positives to the node that raised them.
   */
  onDecision: ((kind: 'suspect' | 'dead', node: string) => void) | undefined;
  readonly broadcasts: BroadcastQueue;

  private readonly cfg: MemberlistConfig;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly transport: Transport;
  private readonly random: () => number;
  private readonly keyring: Keyring | undefined;
  private readonly nodeMap = new Map<string, NodeEntry>();
  private nodes: NodeEntry[] = [];
  private probeIndex = 0;
  private seq = 0;
  private incarnation = 0;
  private health = 0;
  private left = false;
  private closed = false;
  private started = false;
  private readonly timers = new Map<string, Suspicion>();
  private readonly ackHandlers = new Map<number, { ack: (payload?: Buffer) => void; nack: () => void }>();
  private probeTimer: TimerHandle | undefined;
  private gossipTimer: TimerHandle | undefined;
  private pushPullTimer: TimerHandle | undefined;
  private localAddr: Addr;
  private readonly dVsn: [number, number, number];

  constructor(opts: MemberlistOptions, deps: MemberlistDeps) {
    this.name = opts.name;
    this.cfg = opts.config;
    this.clock = deps.clock;
    this.log = deps.logger;
    this.transport = deps.transport;
    this.random = deps.random ?? Math.random;
    this.keyring = opts.keyring;
    this.localAddr = opts.advertise;
    this.dVsn = opts.delegateVersions ?? [0, 0, 0];
    this.broadcasts = new BroadcastQueue(this.cfg.retransmitMult, () => this.numNodes());
  }

  get config(): Readonly<MemberlistConfig> {
    return this.cfg;
  }
  get address(): Addr {
    return this.localAddr;
  }
  get healthScore(): number {
    return this.health;
  }
  get hasLeft(): boolean {
    return this.left;
  }

  vsn(): number[] {
    return [...PROTOCOL_VERSION, ...this.dVsn];
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const bound = await this.transport.listen({
      packet: (buf, from) => this.onPacket(buf, from),
      stream: (conn) => void this.onStream(conn),
    });
    if (this.localAddr.port === 0) this.localAddr = { host: this.localAddr.host, port: bound.port };
    if (!isIPv4(this.localAddr.host)) throw new Error('advertise address must be an IPv4 literal');
    const meta = this.delegate?.nodeMeta(META_MAX) ?? Buffer.alloc(0);
    this.incarnation = 1;
    this.aliveNode(this.selfAlive(meta), true);
    this.scheduleProbe(this.cfg.probeIntervalMs);
    this.gossipTimer = this.clock.setInterval(() => this.gossip(), this.cfg.gossipIntervalMs);
    this.schedulePushPull();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clock.clearTimeout(this.probeTimer);
    this.clock.clearInterval(this.gossipTimer);
    this.clock.clearTimeout(this.pushPullTimer);
    for (const s of this.timers.values()) this.clock.clearTimeout(s.timer);
    this.timers.clear();
    this.broadcasts.clear();
    await this.transport.close();
  }

  members(): NodeInfo[] {
    return this.nodes.map((n) => this.info(n));
  }
  /** Nodes that are alive or suspect (memberlist's NumMembers). */
  numNodes(): number {
    let c = 0;
    for (const n of this.nodes) if (n.state === 'alive' || n.state === 'suspect') c++;
    return Math.max(1, c);
  }
  node(name: string): NodeInfo | undefined {
    const n = this.nodeMap.get(name);
    return n && this.info(n);
  }

  private info(n: NodeEntry): NodeInfo {
    return {
      name: n.name,
      host: n.host,
      port: n.port,
      meta: n.meta,
      incarnation: n.incarnation,
      state: n.state,
      vsn: n.vsn,
    };
  }

  private selfAlive(meta: Buffer): Alive {
    return {
      incarnation: this.incarnation,
      node: this.name,
      addr: ipBytes(this.localAddr.host),
      port: this.localAddr.port,
      meta,
      vsn: this.vsn(),
    };
  }

  // ---- join / leave / update ----------------------------------------------------------------

  /** Push-pull (Join=true) with each address; returns how many answered. */
  async join(addrs: readonly Addr[]): Promise<{ joined: number; errors: string[] }> {
    let joined = 0;
    const errors: string[] = [];
    for (const a of addrs) {
      try {
        await this.pushPull(a, true);
        joined++;
      } catch (err) {
        errors.push(`${addrKey(a)}: ${(err as Error).message}`);
      }
    }
    return { joined, errors };
  }

  /** New incarnation with fresh Meta from the delegate (tags changed). */
  updateNode(): void {
    const meta = this.delegate?.nodeMeta(META_MAX) ?? Buffer.alloc(0);
    if (meta.length > META_MAX) throw new Error('node meta exceeds 512 bytes');
    this.incarnation++;
    this.aliveNode(this.selfAlive(meta), true);
  }

  /** Broadcast dead(self) with From = self and wait until it was sent or the timeout passed. */
  async leave(timeoutMs: number): Promise<void> {
    if (this.left || this.closed) return;
    this.left = true;
    const me = this.nodeMap.get(this.name);
    if (!me) return;
    let resolve!: () => void;
    const sent = new Promise<void>((r) => (resolve = r));
    this.deadNode({ incarnation: me.incarnation, node: this.name, from: this.name }, resolve);
    if (!this.anyAlive()) return;
    let t: TimerHandle | undefined;
    await Promise.race([sent, new Promise<void>((r) => (t = this.clock.setTimeout(r, timeoutMs)))]);
    this.clock.clearTimeout(t);
  }

  private anyAlive(): boolean {
    return this.nodes.some((n) => n.name !== this.name && n.state !== 'dead' && n.state !== 'left');
  }

  // ---- state machine (state.go) -------------------------------------------------------------

  private broadcast(node: string, msg: Buffer, done?: () => void): void {
    this.broadcasts.queue({ msg, node, done });
  }

  private aliveNode(a: Alive, bootstrap: boolean, done?: () => void): void {
    if (a.vsn.length >= 3) {
      const [pmin, pmax] = a.vsn;
      if (!pmin || !pmax || pmin > pmax) return this.drop('alive_bad_vsn');
    }
    const host = ipString(a.addr);
    if (host === undefined) return this.drop('alive_bad_addr');
    let st = this.nodeMap.get(a.node);
    let updatesNode = false;
    if (!st) {
      st = {
        name: a.node,
        addr: a.addr,
        host,
        port: a.port,
        meta: a.meta,
        incarnation: 0,
        state: 'dead',
        stateChange: this.clock.monotonic(),
        vsn: a.vsn,
      };
      this.nodeMap.set(a.node, st);
      // insert at a random position so probes stay spread out
      const i = Math.floor(this.random() * (this.nodes.length + 1));
      this.nodes.splice(i, 0, st);
      if (i <= this.probeIndex && this.nodes.length > 1) this.probeIndex++;
    } else if (!st.addr.equals(a.addr) || st.port !== a.port) {
      if (st.state === 'left') updatesNode = true;
      else {
        this.log.warn(
          { node: a.node, old: `${st.host}:${st.port}`, new: `${host}:${a.port}` },
          'conflicting address',
        );
        this.delegate?.notifyConflict?.(this.info(st), {
          ...this.info(st),
          host,
          port: a.port,
          meta: a.meta,
        });
        return;
      }
    }
    const isLocal = a.node === this.name;
    if (a.incarnation <= st.incarnation && !isLocal && !updatesNode) return;
    if (a.incarnation < st.incarnation && isLocal) return;
    this.clearSuspicion(a.node);
    const oldState = st.state;
    const oldMeta = st.meta;
    if (!bootstrap && isLocal) {
      if (a.incarnation === st.incarnation && a.meta.equals(st.meta) && sameVsn(a.vsn, this.vsn())) return;
      this.refute(st, a.incarnation);
      this.log.warn({ accused: a.incarnation }, 'refuting an alive message about ourselves');
    } else {
      this.broadcast(a.node, encodeAlive(a), done);
      st.incarnation = a.incarnation;
      st.meta = Buffer.from(a.meta);
      st.addr = Buffer.from(a.addr);
      st.host = host;
      st.port = a.port;
      if (a.vsn.length === 6) st.vsn = a.vsn;
      if (isLocal) this.incarnation = Math.max(this.incarnation, a.incarnation);
      if (st.state !== 'alive') {
        st.state = 'alive';
        st.stateChange = this.clock.monotonic();
      }
    }
    if (oldState === 'dead' || oldState === 'left') this.delegate?.notifyJoin(this.info(st));
    else if (!oldMeta.equals(st.meta)) this.delegate?.notifyUpdate(this.info(st));
  }

  private suspectNode(s: Suspect): void {
    const st = this.nodeMap.get(s.node);
    if (!st || s.incarnation < st.incarnation) return;
    const timer = this.timers.get(s.node);
    if (timer) {
      if (this.confirm(timer, s.from)) this.broadcast(s.node, encodeSuspect(s));
      return;
    }
    if (st.state !== 'alive') return;
    if (st.name === this.name) {
      this.refute(st, s.incarnation);
      this.log.warn({ from: s.from }, 'refuting a suspect message');
      return;
    }
    this.broadcast(s.node, encodeSuspect(s));
    this.stats.suspicionsRaised++;
    st.incarnation = s.incarnation;
    st.state = 'suspect';
    const changeTime = this.clock.monotonic();
    st.stateChange = changeTime;
    const n = this.numNodes();
    let k = this.cfg.lifeguard ? this.cfg.suspicionMult - 2 : 0;
    if (n - 2 < k) k = 0;
    const min = suspicionTimeout(this.cfg.suspicionMult, n, this.cfg.probeIntervalMs);
    const max = this.cfg.lifeguard ? this.cfg.suspicionMaxTimeoutMult * min : min;
    const fire = (): void => {
      this.timers.delete(s.node);
      if (st.state === 'suspect' && st.stateChange === changeTime) {
        this.log.info({ node: s.node }, 'marking node as failed, suspect timeout reached');
        this.stats.deathsDeclared++;
        this.onDecision?.('dead', s.node);
        this.deadNode({ incarnation: st.incarnation, node: s.node, from: this.name });
      }
    };
    const sus: Suspicion = {
      k,
      n: 0,
      min,
      max,
      start: changeTime,
      from: new Set([s.from]),
      timer: undefined,
      fire,
    };
    sus.timer = this.clock.setTimeout(fire, k < 1 ? min : max);
    this.timers.set(s.node, sus);
  }

  /** Lifeguard: each independent confirmation shrinks the remaining suspicion time (suspicion.go). */
  private confirm(s: Suspicion, from: string): boolean {
    if (s.n >= s.k || s.from.has(from)) return false;
    s.from.add(from);
    s.n++;
    const frac = Math.log(s.n + 1) / Math.log(s.k + 1);
    const timeout = Math.max(s.min, Math.floor(s.max - frac * (s.max - s.min)));
    const elapsed = this.clock.monotonic() - s.start;
    this.clock.clearTimeout(s.timer);
    s.timer = this.clock.setTimeout(s.fire, Math.max(0, timeout - elapsed));
    return true;
  }

  private clearSuspicion(node: string): void {
    const t = this.timers.get(node);
    if (t) {
      this.clock.clearTimeout(t.timer);
      this.timers.delete(node);
    }
  }

  private deadNode(d: Dead, done?: () => void): void {
    const st = this.nodeMap.get(d.node);
    if (!st || d.incarnation < st.incarnation) return;
    this.clearSuspicion(d.node);
    if (st.state === 'dead' || st.state === 'left') return;
    if (st.name === this.name && !this.left) {
      this.refute(st, d.incarnation);
      this.log.warn({ from: d.from }, 'refuting a dead message');
      return;
    }
    this.broadcast(d.node, encodeDead(d), done);
    st.incarnation = d.incarnation;
    st.state = d.node === d.from ? 'left' : 'dead';
    st.stateChange = this.clock.monotonic();
    this.delegate?.notifyLeave(this.info(st));
  }

  private refute(me: NodeEntry, accused: number): void {
    this.incarnation = Math.max(this.incarnation + 1, accused + 1);
    me.incarnation = this.incarnation;
    this.stats.refutes++;
    this.awareness(1);
    const a = this.selfAlive(me.meta);
    this.broadcast(this.name, encodeAlive(a));
  }

  private awareness(delta: number): void {
    if (!this.cfg.lifeguard) return;
    this.health = Math.min(this.cfg.awarenessMaxMultiplier - 1, Math.max(0, this.health + delta));
  }

  // ---- packets -------------------------------------------------------------------------------

  private drop(reason: string): void {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
  }

  private onPacket(buf: Buffer, from: Addr): void {
    if (this.closed) return;
    this.stats.packetsIn++;
    if (buf.length === 0) return this.drop('empty');
    if (buf.length > MAX_UDP_PACKET) return this.drop('oversized');
    let b = buf;
    if (this.keyring && this.keyring.size > 0) {
      const plain = this.keyring.decrypt(buf);
      if (!plain) {
        if (this.cfg.gossipVerifyIncoming) return this.drop('decrypt');
      } else b = plain;
    }
    try {
      this.handleMessage(b, from, 0);
    } catch (err) {
      this.drop('malformed');
      this.log.debug({ err: (err as Error).message, from: addrKey(from) }, 'dropped malformed gossip packet');
    }
  }

  private handleMessage(buf: Buffer, from: Addr, depth: number): void {
    if (buf.length < 1) throw new Error('empty message');
    if (depth > 4) throw new Error('nesting too deep');
    const t = buf[0]!;
    const body = buf.subarray(1);
    switch (t) {
      case MsgType.hasCrc:
        return this.handleMessage(checkCrc(buf), from, depth + 1);
      case MsgType.compress:
        return this.handleMessage(decompressBody(body), from, depth + 1);
      case MsgType.compound: {
        const { parts, truncated } = splitCompound(body);
        if (truncated) this.drop('compound_truncated');
        for (const p of parts) {
          try {
            this.handleMessage(p, from, depth + 1);
          } catch {
            this.drop('malformed');
          }
        }
        return;
      }
      case MsgType.ping:
        return this.handlePing(decodePing(decodeBody(body)), from);
      case MsgType.indirectPing:
        return this.handleIndirect(decodeIndirect(decodeBody(body)), from);
      case MsgType.ack: {
        const a = decodeAck(decodeBody(body));
        this.ackHandlers.get(a.seqNo)?.ack(a.payload);
        return;
      }
      case MsgType.nack: {
        const a = decodeAck(decodeBody(body));
        this.ackHandlers.get(a.seqNo)?.nack();
        return;
      }
      case MsgType.alive:
        return this.aliveNode(decodeAlive(decodeBody(body)), false);
      case MsgType.suspect:
        return this.suspectNode(decodeSuspect(decodeBody(body)));
      case MsgType.dead:
        return this.deadNode(decodeSuspect(decodeBody(body)));
      case MsgType.user:
        this.delegate?.notifyMsg(Buffer.from(body), from);
        return;
      default:
        throw new Error(`unknown message type ${t}`);
    }
  }

  private replyAddr(
    p: { sourceAddr?: Buffer | undefined; sourcePort?: number | undefined },
    from: Addr,
  ): Addr {
    if (p.sourceAddr && p.sourceAddr.length > 0 && p.sourcePort) {
      const host = ipString(p.sourceAddr);
      if (host) return { host, port: p.sourcePort };
    }
    return from;
  }

  private handlePing(p: ReturnType<typeof decodePing>, from: Addr): void {
    if (p.node && p.node !== this.name) return this.drop('ping_wrong_node');
    this.sendMsg(
      this.replyAddr(p, from),
      encodeAck({ seqNo: p.seqNo, payload: this.delegate?.ackPayload?.() }),
    );
  }

  private handleIndirect(r: ReturnType<typeof decodeIndirect>, from: Addr): void {
    const host = ipString(r.target);
    if (!host) return this.drop('indirect_bad_target');
    const requester = this.replyAddr(r, from);
    const seq = this.nextSeq();
    let answered = false;
    const timer = this.clock.setTimeout(() => {
      this.ackHandlers.delete(seq);
      if (!answered && r.nack) this.sendMsg(requester, encodeNack(r.seqNo));
    }, this.cfg.probeTimeoutMs);
    this.ackHandlers.set(seq, {
      ack: () => {
        if (answered) return;
        answered = true;
        this.ackHandlers.delete(seq);
        this.clock.clearTimeout(timer);
        this.sendMsg(requester, encodeAck({ seqNo: r.seqNo }));
      },
      nack: () => undefined,
    });
    this.sendMsg(
      { host, port: r.port },
      encodePing({
        seqNo: seq,
        node: r.node,
        sourceAddr: ipBytes(this.localAddr.host),
        sourcePort: this.localAddr.port,
        sourceNode: this.name,
      }),
    );
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    return this.seq;
  }

  /** Send one message, piggy-backing queued broadcasts into a compound (sendMsg in net.go). */
  private sendMsg(to: Addr, msg: Buffer, node?: NodeEntry): void {
    let overhead = 2;
    if (this.keyring && this.keyring.size > 0) overhead += ENCRYPT_OVERHEAD;
    const room = this.cfg.udpBufferSize - msg.length - overhead;
    const extra = room > 0 ? this.getBroadcasts(2, room) : [];
    this.rawSend(to, extra.length === 0 ? msg : makeCompound([msg, ...extra]), node);
  }

  private getBroadcasts(overhead: number, limit: number): Buffer[] {
    const mine = this.broadcasts.get(overhead, limit);
    let used = mine.reduce((s, m) => s + m.length + overhead, 0);
    const out = [...mine];
    if (this.delegate) {
      for (const m of this.delegate.getBroadcasts(overhead + 1, limit - used)) {
        const u = Buffer.concat([Buffer.from([MsgType.user]), m]);
        used += u.length + overhead;
        out.push(u);
      }
    }
    return out;
  }

  private rawSend(to: Addr, msg: Buffer, node?: NodeEntry): void {
    if (this.closed) return;
    let b = msg;
    if (this.cfg.enableCompression) {
      const c = compressMsg(msg);
      if (c.length < b.length) b = c;
    }
    if (node && (node.vsn[1] ?? 0) >= 5) b = addCrc(b);
    if (this.keyring && this.keyring.size > 0) b = this.keyring.encrypt(b);
    this.stats.packetsOut++;
    this.stats.bytesOut += b.length;
    this.transport.sendPacket(to, b);
  }

  /** Send a raw user message (serf query responses) to an address over UDP. */
  sendUser(to: Addr, msg: Buffer): void {
    this.rawSend(to, Buffer.concat([Buffer.from([MsgType.user]), msg]));
  }

  // ---- gossip and probes ---------------------------------------------------------------------

  private gossip(): void {
    if (this.closed) return;
    const now = this.clock.monotonic();
    const candidates = this.nodes.filter(
      (n) =>
        n.name !== this.name &&
        (n.state === 'alive' ||
          n.state === 'suspect' ||
          (n.state === 'dead' && now - n.stateChange <= this.cfg.gossipToTheDeadMs)),
    );
    const targets = pick(candidates, this.cfg.gossipNodes, this.random);
    let overhead = 2;
    if (this.keyring && this.keyring.size > 0) overhead += ENCRYPT_OVERHEAD;
    for (const t of targets) {
      const msgs = this.getBroadcasts(2, this.cfg.udpBufferSize - overhead);
      if (msgs.length === 0) return;
      this.rawSend({ host: t.host, port: t.port }, msgs.length === 1 ? msgs[0]! : makeCompound(msgs), t);
    }
  }

  private scheduleProbe(ms: number): void {
    if (this.closed) return;
    this.probeTimer = this.clock.setTimeout(() => void this.probe(), ms);
  }

  private async probe(): Promise<void> {
    const interval = this.cfg.probeIntervalMs * (this.health + 1);
    let probed = false;
    try {
      const target = this.nextProbeTarget();
      if (target) {
        await this.probeNode(target, interval);
        probed = true;
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'probe failed');
    }
    // probeNode waits out the scaled interval itself; wait here when nothing was probed (alone,
    // every other node dead or left, or the probe threw) — probing again at once would spin.
    this.scheduleProbe(probed ? 0 : interval);
  }

  private nextProbeTarget(): NodeEntry | undefined {
    for (let checked = 0; checked < this.nodes.length; checked++) {
      if (this.probeIndex >= this.nodes.length) {
        this.resetNodes();
        this.probeIndex = 0;
        if (this.nodes.length === 0) return undefined;
      }
      const n = this.nodes[this.probeIndex++]!;
      if (n.name === this.name || n.state === 'dead' || n.state === 'left') continue;
      return n;
    }
    return undefined;
  }

  /** At each wrap: forget nodes dead longer than GossipToTheDeadTime, then reshuffle. */
  private resetNodes(): void {
    const now = this.clock.monotonic();
    this.nodes = this.nodes.filter((n) => {
      const gone =
        (n.state === 'dead' || n.state === 'left') && now - n.stateChange > this.cfg.gossipToTheDeadMs;
      if (gone) this.nodeMap.delete(n.name);
      return !gone;
    });
    for (let i = this.nodes.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [this.nodes[i], this.nodes[j]] = [this.nodes[j]!, this.nodes[i]!];
    }
  }

  private wait(ms: number): Promise<void> {
    return new Promise((r) => this.clock.setTimeout(r, Math.max(0, ms)));
  }

  private async probeNode(target: NodeEntry, interval: number): Promise<void> {
    this.stats.probes++;
    const start = this.clock.monotonic();
    const seq = this.nextSeq();
    let acked = false;
    let nacks = 0;
    let ackWaiter: (() => void) | undefined;
    this.ackHandlers.set(seq, {
      ack: () => {
        acked = true;
        ackWaiter?.();
      },
      nack: () => void nacks++,
    });
    const to = { host: target.host, port: target.port };
    const ping = encodePing({
      seqNo: seq,
      node: target.name,
      sourceAddr: ipBytes(this.localAddr.host),
      sourcePort: this.localAddr.port,
      sourceNode: this.name,
    });
    try {
      // Lifeguard's buddy system: a suspect learns of its suspicion from the prober's ping itself.
      if (target.state === 'alive' || !this.cfg.lifeguard) this.sendMsg(to, ping);
      else
        this.rawSend(
          to,
          makeCompound([
            ping,
            encodeSuspect({ incarnation: target.incarnation, node: target.name, from: this.name }),
          ]),
          target,
        );
      await new Promise<void>((r) => {
        ackWaiter = r;
        this.clock.setTimeout(r, this.cfg.probeTimeoutMs);
      });
      if (acked) {
        this.awareness(-1);
        return this.waitRest(start, interval);
      }
      // indirect probes through k random alive peers, plus a TCP ping if the target speaks >= 3
      const peers = pick(
        this.nodes.filter((n) => n.name !== this.name && n.name !== target.name && n.state === 'alive'),
        this.cfg.indirectChecks,
        this.random,
      );
      let expectedNacks = 0;
      for (const p of peers) {
        const nack = (p.vsn[1] ?? 0) >= 4;
        if (nack) expectedNacks++;
        this.sendMsg(
          { host: p.host, port: p.port },
          encodeIndirect({
            seqNo: seq,
            target: target.addr,
            port: target.port,
            node: target.name,
            nack,
            sourceAddr: ipBytes(this.localAddr.host),
            sourcePort: this.localAddr.port,
            sourceNode: this.name,
          }),
        );
      }
      const remaining = interval - (this.clock.monotonic() - start);
      if ((target.vsn[1] ?? 0) >= 3 && remaining > 0)
        void this.tcpPing(to, target.name, remaining).then((ok) => {
          if (ok && !acked) {
            this.log.warn(
              { node: target.name },
              'was able to connect over TCP but UDP probes failed; network may be misconfigured',
            );
            acked = true;
            ackWaiter?.();
          }
        });
      await new Promise<void>((r) => {
        ackWaiter = r;
        this.clock.setTimeout(r, Math.max(0, remaining));
      });
      if (acked) {
        this.awareness(-1);
        return this.waitRest(start, interval);
      }
      this.stats.probeFailures++;
      this.onDecision?.('suspect', target.name);
      this.awareness(expectedNacks > 0 ? Math.max(0, expectedNacks - nacks) : 1);
      this.log.debug({ node: target.name }, 'suspect node has failed, no acks received');
      this.suspectNode({ incarnation: target.incarnation, node: target.name, from: this.name });
    } finally {
      this.ackHandlers.delete(seq);
    }
  }

  private waitRest(start: number, interval: number): Promise<void> {
    return this.wait(interval - (this.clock.monotonic() - start));
  }

  private async tcpPing(to: Addr, name: string, timeoutMs: number): Promise<boolean> {
    const seq = this.nextSeq();
    let conn: StreamConn | undefined;
    try {
      conn = await this.transport.dial(to, timeoutMs);
      conn.write(
        wrapStream(encodePing({ seqNo: seq, node: name }), this.cfg.enableCompression, this.keyring),
      );
      const msg = await conn.read((b) => this.parse(b), timeoutMs);
      return msg.type === 'ack' && msg.ack.seqNo === seq;
    } catch {
      return false;
    } finally {
      conn?.close();
    }
  }

  // ---- push-pull (TCP) -----------------------------------------------------------------------

  private schedulePushPull(): void {
    if (this.closed) return;
    const n = this.numNodes();
    const scale = n <= 32 ? 1 : Math.ceil(Math.log2(n) - Math.log2(32)) + 1;
    const base = this.cfg.pushPullIntervalMs * scale;
    // memberlist staggers the first run by a random fraction of the interval
    this.pushPullTimer = this.clock.setTimeout(() => {
      const peers = this.nodes.filter((x) => x.name !== this.name && x.state === 'alive');
      const p = pick(peers, 1, this.random)[0];
      if (p)
        void this.pushPull({ host: p.host, port: p.port }, false).catch((err: Error) =>
          this.log.debug({ node: p.name, err: err.message }, 'push/pull failed'),
        );
      this.schedulePushPull();
    }, base);
  }

  private localPushPull(join: boolean): Buffer {
    const nodes: PushNodeState[] = this.nodes.map((n) => ({
      name: n.name,
      addr: n.addr,
      port: n.port,
      meta: n.meta,
      incarnation: n.incarnation,
      state: NodeStateCode[n.state],
      vsn: n.vsn,
    }));
    const userState = this.delegate?.localState(join) ?? Buffer.alloc(0);
    return encodePushPull({ join, nodes, userState });
  }

  private parse(b: Buffer): StreamMsg {
    return parseStream(b, { keyring: this.keyring, verifyIncoming: this.cfg.gossipVerifyIncoming });
  }

  /** Exchange full state with one peer over TCP. */
  async pushPull(to: Addr, join: boolean): Promise<void> {
    const conn = await this.transport.dial(to, this.cfg.tcpTimeoutMs);
    try {
      conn.write(wrapStream(this.localPushPull(join), this.cfg.enableCompression, this.keyring));
      const reply = await conn.read((b) => this.parse(b), this.cfg.tcpTimeoutMs);
      if (reply.type === 'err') throw new Error(`remote error: ${reply.error}`);
      if (reply.type !== 'pushPull') throw new Error(`unexpected reply ${reply.type}`);
      this.mergeRemote(reply.pushPull.nodes, reply.pushPull.userState, join);
    } finally {
      conn.close();
    }
  }

  private async onStream(conn: StreamConn): Promise<void> {
    this.stats.streamsIn++;
    try {
      const msg = await conn.read((b) => this.parse(b), this.cfg.tcpTimeoutMs);
      switch (msg.type) {
        case 'pushPull':
          conn.write(
            wrapStream(this.localPushPull(msg.pushPull.join), this.cfg.enableCompression, this.keyring),
          );
          this.mergeRemote(msg.pushPull.nodes, msg.pushPull.userState, msg.pushPull.join);
          break;
        case 'ping':
          if (msg.ping.node && msg.ping.node !== this.name) break;
          conn.write(
            wrapStream(encodeAck({ seqNo: msg.ping.seqNo }), this.cfg.enableCompression, this.keyring),
          );
          break;
        case 'user':
          this.delegate?.notifyMsg(msg.payload, conn.remote);
          break;
        default:
          break;
      }
    } catch (err) {
      this.stats.streamErrors++;
      this.drop('stream');
      this.log.debug({ err: (err as Error).message, from: addrKey(conn.remote) }, 'failed to handle stream');
      try {
        conn.write(wrapStream(encodeErr((err as Error).message), false, this.keyring));
      } catch {
        // the peer is gone or the keyring is empty: nothing to tell it
      }
    } finally {
      conn.close();
    }
  }

  /**
   * memberlist's verifyProtocol: across our alive nodes and the remote ones, every node's current
   * protocol (memberlist and delegate) must lie within [highest min, lowest max]. An empty remote
   * Vsn counts as version 0 and fails. Throws, so the push-pull (and a join) fails without merging.
   */
  private verifyProtocol(remote: PushNodeState[]): void {
    // ranges from alive nodes that carry a Vsn; the check covers every node (memberlist's verifyProtocol)
    const ranged: number[][] = [];
    for (const r of remote) if (r.state === NodeStateCode.alive && r.vsn.length === 6) ranged.push(r.vsn);
    for (const n of this.nodes) if (n.state === 'alive' && n.vsn.length === 6) ranged.push(n.vsn);
    const checked = [
      ...remote.map((r) => (r.vsn.length === 6 ? r.vsn : [0, 0, 0, 0, 0, 0])),
      ...this.nodes.filter((n) => n.vsn.length === 6).map((n) => n.vsn),
    ];
    for (const [lo, hi, cur, what] of [
      [0, 1, 2, 'protocol'],
      [3, 4, 5, 'delegate protocol'],
    ] as const) {
      const maxMin = Math.max(0, ...ranged.map((v) => v[lo]!));
      const minMax = Math.min(255, ...ranged.map((v) => v[hi]!));
      for (const v of checked)
        if (v[cur]! < maxMin || v[cur]! > minMax)
          throw new Error(`${what} version (${v[cur]}) is incompatible: [${maxMin}, ${minMax}]`);
    }
  }

  private mergeRemote(nodes: PushNodeState[], userState: Buffer, join: boolean): void {
    for (const r of nodes) {
      if (r.vsn.length > 0 && r.vsn.length !== 6) throw new Error('remote Vsn must be 6 bytes');
    }
    this.verifyProtocol(nodes);
    for (const r of nodes) {
      switch (r.state) {
        case NodeStateCode.alive:
          this.aliveNode(
            {
              incarnation: r.incarnation,
              node: r.name,
              addr: r.addr,
              port: r.port,
              meta: r.meta,
              vsn: r.vsn,
            },
            false,
          );
          break;
        case NodeStateCode.left:
          this.deadNode({ incarnation: r.incarnation, node: r.name, from: r.name });
          break;
        default:
          this.suspectNode({ incarnation: r.incarnation, node: r.name, from: this.name });
      }
    }
    if (userState.length > 0) this.delegate?.mergeRemoteState(userState, join);
  }
}

export function suspicionTimeout(mult: number, n: number, intervalMs: number): number {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, n)));
  return Math.floor(mult * nodeScale * intervalMs);
}

function pick<T>(xs: T[], k: number, random: () => number): T[] {
  const a = [...xs];
  const out: T[] = [];
  while (out.length < k && a.length > 0) {
    const i = Math.floor(random() * a.length);
    out.push(a[i]!);
    a.splice(i, 1);
  }
  return out;
}

export function ipBytes(host: string): Buffer {
  if (!isIPv4(host)) return Buffer.alloc(0);
  return Buffer.from(host.split('.').map((x) => Number(x)));
}
export function ipString(b: Buffer): string | undefined {
  if (b.length === 4) return [...b].join('.');
  if (b.length === 16) {
    if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff)
      return [...b.subarray(12)].join('.');
    const parts: string[] = [];
    for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(i).toString(16));
    return parts.join(':');
  }
  return undefined;
}
function sameVsn(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
