// A whole gossip cluster in one process: N GossipPools on a MemoryNetwork driven by a SimClock.
// For simulation tests and the benchmark; runs many times faster than real time and is seeded.

import { silentLogger } from '@meshfed/core';
import { GossipPool, type GossipPoolOptions } from './gossip-pool.js';
import type { MemberlistConfig } from './memberlist.js';
import { DelayGate, GatedClock, SimClock, StallGate, seededRandom, type StallOptions } from './sim.js';
import { MemoryNetwork } from './transport.js';

export interface SimClusterOptions {
  n: number;
  profile?: 'lan' | 'wan' | 'local';
  loss?: number;
  latencyMs?: number;
  seed?: number;
  memberlist?: Partial<MemberlistConfig>;
  pool?: Partial<GossipPoolOptions>;
  /**
   * One CPU-starved node (Lifeguard's "slow node"): its timers and inbound traffic are held while
   * its event loop stalls, then handled late; nothing is dropped. Stalls begin at `startSlow()`.
   */
  slow?: { index: number } & Partial<Omit<StallOptions, 'random'>>;
  /**
   * Members with slow message processing (the Lifeguard paper's anomaly): their inbound traffic is
   * handled `delayMs` late while their timers and sends run normally. Starts at `startSlow()`.
   */
  delayed?: { indices: readonly number[]; delayMs: number };
}

/** A failure-detector decision taken by one node about another (see Memberlist.onDecision). */
export interface SimDecision {
  at: number;
  by: string;
  kind: 'suspect' | 'dead';
  node: string;
}

export interface SimEvent {
  at: number;
  observer: string;
  type: 'member-join' | 'member-failed' | 'member-leave';
  node: string;
}

export class SimCluster {
  readonly clock = new SimClock();
  readonly net: MemoryNetwork;
  readonly pools: GossipPool[] = [];
  readonly events: SimEvent[] = [];
  readonly dead = new Set<number>();
  readonly decisions: SimDecision[] = [];
  /** The slow node's event-loop gate, when `slow` was given. */
  readonly slowGate: StallGate | undefined;
  /** The delay gates of the `delayed` members, by index. */
  readonly delayGates = new Map<number, DelayGate>();
  private readonly random: () => number;

  constructor(readonly opts: SimClusterOptions) {
    this.random = seededRandom(opts.seed ?? 1);
    this.net = new MemoryNetwork(this.clock, {
      loss: opts.loss ?? 0,
      latencyMs: opts.latencyMs ?? 1,
      random: seededRandom((opts.seed ?? 1) + 7),
    });
    if (opts.slow)
      this.slowGate = new StallGate(this.clock, {
        stallMinMs: opts.slow.stallMinMs ?? 200,
        stallMaxMs: opts.slow.stallMaxMs ?? 2_000,
        runMinMs: opts.slow.runMinMs ?? 200,
        runMaxMs: opts.slow.runMaxMs ?? 2_000,
        random: seededRandom((opts.seed ?? 1) + 13),
      });
    for (const i of opts.delayed?.indices ?? [])
      this.delayGates.set(i, new DelayGate(this.clock, opts.delayed!.delayMs));
  }

  /** Names of the anomalous members (stalled or delayed). */
  anomalous(): Set<string> {
    const names = new Set<string>();
    if (this.opts.slow) names.add(SimCluster.name_(this.opts.slow.index));
    for (const i of this.delayGates.keys()) names.add(SimCluster.name_(i));
    return names;
  }

  /** Start the slow node's stall cycle. */
  startSlow(): void {
    this.slowGate?.start();
    for (const g of this.delayGates.values()) g.start();
  }
  stopSlow(): void {
    this.slowGate?.stop();
    for (const g of this.delayGates.values()) g.stop();
  }

  static name_(i: number): string {
    return `n${String(i).padStart(3, '0')}`;
  }
  static host(i: number): string {
    return `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.opts.n; i++) {
      const addr = { host: SimCluster.host(i), port: 7946 };
      const isSlow = this.opts.slow?.index === i && this.slowGate !== undefined;
      if (isSlow) this.net.gates.set(`${addr.host}:${addr.port}`, this.slowGate!);
      const delay = this.delayGates.get(i);
      if (delay) this.net.gates.set(`${addr.host}:${addr.port}`, delay);
      const clock = isSlow ? new GatedClock(this.clock, this.slowGate!) : this.clock;
      const pool = new GossipPool(
        {
          nodeName: SimCluster.name_(i),
          advertise: addr,
          profile: this.opts.profile ?? 'wan',
          memberlist: this.opts.memberlist ?? {},
          ...(this.opts.pool ?? {}),
        },
        { logger: silentLogger, clock, transport: this.net.transport(addr), random: this.random },
      );
      for (const type of ['member-join', 'member-failed', 'member-leave'] as const)
        pool.on(type, (m) =>
          this.events.push({
            at: this.clock.monotonic(),
            observer: pool.localMember?.name ?? '',
            type,
            node: m.name,
          }),
        );
      const by = SimCluster.name_(i);
      pool.memberlist.onDecision = (kind, node) =>
        this.decisions.push({ at: this.clock.monotonic(), by, kind, node });
      await pool.start();
      this.pools.push(pool);
    }
  }

  /** Every node joins through node 0, 5 ms apart; runs the clock until all joins have answered. */
  async joinAll(): Promise<number> {
    let failed = 0;
    let pending = this.pools.length - 1;
    const seed = `${SimCluster.host(0)}:7946`;
    this.pools.slice(1).forEach((p, i) =>
      this.clock.setTimeout(() => {
        p.join([seed]).then(
          () => void pending--,
          () => {
            failed++;
            pending--;
          },
        );
      }, i * 5),
    );
    await this.clock.runUntil(() => pending === 0, this.pools.length * 5 + 120_000, 5);
    return failed;
  }

  live(): number[] {
    return this.pools.map((_, i) => i).filter((i) => !this.dead.has(i));
  }

  /** True when every live node lists exactly the live nodes as alive. */
  converged(): boolean {
    const live = this.live();
    for (const i of live) {
      const alive = new Set(
        this.pools[i]!.members()
          .filter((m) => m.status === 'alive')
          .map((m) => m.name),
      );
      if (alive.size !== live.length) return false;
      for (const j of live) if (!alive.has(SimCluster.name_(j))) return false;
    }
    return true;
  }

  /** Crash node i: it stops answering and sending (no leave). */
  async kill(i: number): Promise<void> {
    this.dead.add(i);
    await this.pools[i]!.close();
  }

  /** How many live nodes currently list node `name` with this status. */
  countStatus(name: string, status: string): number {
    return this.live().filter((i) =>
      this.pools[i]!.members().some((m) => m.name === name && m.status === status),
    ).length;
  }

  async close(): Promise<void> {
    for (const p of this.pools) await p.close();
  }
}
