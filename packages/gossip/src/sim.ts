// Simulation tooling: a heap-ordered manual clock (testkit's ManualClock scans every timer per
// fire, too slow for 200 nodes × thousands of in-flight packets) and a seeded PRNG. Used by tests
// and benchmarks only; production code never constructs these. (Candidate for @meshfed/testkit.)

import type { Clock, TimerHandle } from '@meshfed/core';

interface SimTimer extends TimerHandle {
  id: number;
  due: number;
  fn: () => void;
  every: number | undefined;
  cancelled: boolean;
}

export class SimClock implements Clock {
  private mono = 0;
  private seq = 0;
  private heap: SimTimer[] = [];
  fired = 0;

  constructor(private readonly wall = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.wall + this.mono;
  }
  monotonic(): number {
    return this.mono;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, undefined);
  }
  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, Math.max(1, ms));
  }
  clearTimeout(h: TimerHandle | undefined): void {
    if (h) (h as SimTimer).cancelled = true;
  }
  clearInterval(h: TimerHandle | undefined): void {
    this.clearTimeout(h);
  }

  private add(fn: () => void, ms: number, every: number | undefined): SimTimer {
    const t: SimTimer = {
      id: ++this.seq,
      due: this.mono + Math.max(0, ms),
      fn,
      every,
      cancelled: false,
      unref: () => undefined,
    };
    this.push(t);
    return t;
  }

  private less(a: SimTimer, b: SimTimer): boolean {
    return a.due < b.due || (a.due === b.due && a.id < b.id);
  }
  private push(t: SimTimer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  private pop(): SimTimer | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }

  /**
   * Advance simulated time by `ms`, firing timers in due order. After each batch of timers due at
   * the same instant, promise continuations are allowed to run (setImmediate), so async code sees
   * the same interleaving it would in real time.
   */
  async run(ms: number): Promise<void> {
    const end = this.mono + ms;
    await flush();
    for (;;) {
      const top = this.heap[0];
      if (!top || top.due > end) break;
      const due = top.due;
      this.mono = due;
      while (this.heap[0] && this.heap[0].due === due) {
        const t = this.pop()!;
        if (t.cancelled) continue;
        if (t.every !== undefined) {
          t.due += t.every;
          this.push(t);
        }
        this.fired++;
        t.fn();
      }
      await flush();
    }
    this.mono = end;
    await flush();
  }

  /** Run until `cond` holds (checked after each batch) or `maxMs` of simulated time pass. */
  async runUntil(cond: () => boolean, maxMs: number, stepMs = 100): Promise<number | undefined> {
    const start = this.mono;
    while (this.mono - start < maxMs) {
      if (cond()) return this.mono - start;
      await this.run(stepMs);
    }
    return cond() ? this.mono - start : undefined;
  }
}

function flush(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** mulberry32: a small seeded PRNG, so a simulated run is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How a CPU-starved ("slow") node behaves: its event loop stalls for a random while, then runs. */
export interface StallOptions {
  /** Each stall lasts uniformly between these (ms). */
  stallMinMs: number;
  stallMaxMs: number;
  /** Between stalls the node runs normally for uniformly between these (ms). */
  runMinMs: number;
  runMaxMs: number;
  random: () => number;
}

/**
 * A node's event loop under CPU starvation (the slow node of the Lifeguard paper). While stalled,
 * nothing of the node runs: its due timers and its inbound packets/streams queue up (nothing is
 * dropped). When the stall ends the queued timers fire first and the queued I/O is handled 1 ms
 * later, the order Node's event loop uses (timers phase before poll phase) — so a probe deadline
 * that expired during the stall fires before the ack sitting in the socket buffer is read, which
 * is exactly how a starved node comes to suspect healthy peers.
 */
export class StallGate {
  private until = 0;
  private timersQ: (() => void)[] = [];
  private ioQ: (() => void)[] = [];
  private cycle: TimerHandle | undefined;
  private running = false;
  stalls = 0;
  stalledMs = 0;

  constructor(
    private readonly clock: SimClock,
    private readonly opts: StallOptions,
  ) {}

  stalled(): boolean {
    return this.clock.monotonic() < this.until;
  }

  /** Start the stall/run cycle (begins with a run phase). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.scheduleStall();
  }

  /** Stop stalling; anything queued is released now. */
  stop(): void {
    this.running = false;
    this.clock.clearTimeout(this.cycle);
    this.until = 0;
    this.release();
  }

  timer(fn: () => void): void {
    if (this.stalled()) this.timersQ.push(fn);
    else fn();
  }

  io(fn: () => void): void {
    if (this.stalled()) this.ioQ.push(fn);
    else fn();
  }

  private between(a: number, b: number): number {
    return Math.round(a + this.opts.random() * (b - a));
  }

  private scheduleStall(): void {
    this.cycle = this.clock.setTimeout(
      () => {
        const d = this.between(this.opts.stallMinMs, this.opts.stallMaxMs);
        this.stalls++;
        this.stalledMs += d;
        this.until = this.clock.monotonic() + d;
        this.cycle = this.clock.setTimeout(() => {
          this.release();
          if (this.running) this.scheduleStall();
        }, d);
      },
      this.between(this.opts.runMinMs, this.opts.runMaxMs),
    );
  }

  private release(): void {
    const timers = this.timersQ;
    const io = this.ioQ;
    this.timersQ = [];
    this.ioQ = [];
    for (const fn of timers) fn();
    if (io.length > 0)
      this.clock.setTimeout(() => {
        for (const fn of io) fn();
      }, 1);
  }
}

/**
 * Slow message processing, the anomaly of the Lifeguard paper's benchmarks ("vary message
 * processing delays in a controlled manner"): while active, every packet and stream read that
 * reaches an anomalous member is handled `delayMs` late, in arrival order; its timers and its
 * sends are not affected. So its probes' acks, the nacks of its indirect probes and the
 * refutations of the peers it suspects all reach it late — the case Lifeguard was built for.
 */
export class DelayGate {
  private active = false;
  delayed = 0;

  constructor(
    private readonly clock: SimClock,
    readonly delayMs: number,
  ) {}

  start(): void {
    this.active = true;
  }
  /** Stop delaying new arrivals (those already held are still handled late). */
  stop(): void {
    this.active = false;
  }

  io(fn: () => void): void {
    if (!this.active) return fn();
    this.delayed++;
    this.clock.setTimeout(fn, this.delayMs);
  }
}

interface GatedHandle extends TimerHandle {
  inner: TimerHandle | undefined;
  cancelled: boolean;
}

/** The Clock one slow node sees: every timer callback passes through its StallGate. */
export class GatedClock implements Clock {
  constructor(
    private readonly base: SimClock,
    private readonly gate: StallGate,
  ) {}
  now(): number {
    return this.base.now();
  }
  monotonic(): number {
    return this.base.monotonic();
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const h: GatedHandle = { inner: undefined, cancelled: false, unref: () => undefined };
    h.inner = this.base.setTimeout(
      () =>
        this.gate.timer(() => {
          if (!h.cancelled) fn();
        }),
      ms,
    );
    return h;
  }
  /** Like Node's setInterval in a stalled loop: ticks missed during a stall collapse into one. */
  setInterval(fn: () => void, ms: number): TimerHandle {
    const h: GatedHandle = { inner: undefined, cancelled: false, unref: () => undefined };
    const arm = (): void => {
      h.inner = this.base.setTimeout(
        () =>
          this.gate.timer(() => {
            if (h.cancelled) return;
            arm();
            fn();
          }),
        Math.max(1, ms),
      );
    };
    arm();
    return h;
  }
  clearTimeout(h: TimerHandle | undefined): void {
    if (!h) return;
    const g = h as GatedHandle;
    g.cancelled = true;
    this.base.clearTimeout(g.inner);
  }
  clearInterval(h: TimerHandle | undefined): void {
    this.clearTimeout(h);
  }
}
