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
