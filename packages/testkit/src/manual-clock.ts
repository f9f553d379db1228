// A Clock whose time moves only when a test says so. Timers fire in due order during advance(),
// each at its own due time, so code under test sees the same sequence it would see in real time.

import type { Clock, TimerHandle } from '@meshfed/core';

interface Timer extends TimerHandle {
  id: number;
  due: number;
  fn: () => void;
  every: number | undefined;
}

export class ManualClock implements Clock {
  private mono = 0;
  private seq = 0;
  private readonly timers = new Map<number, Timer>();

  constructor(private wall = Date.UTC(2026, 0, 1)) {}

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
    if (h) this.timers.delete((h as Timer).id);
  }
  clearInterval(h: TimerHandle | undefined): void {
    this.clearTimeout(h);
  }
  /** Number of timers still pending. */
  get pending(): number {
    return this.timers.size;
  }

  private add(fn: () => void, ms: number, every: number | undefined): TimerHandle {
    const t: Timer = { id: ++this.seq, due: this.mono + Math.max(0, ms), fn, every, unref: () => undefined };
    this.timers.set(t.id, t);
    return t;
  }

  private next(limit: number): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.timers.values())
      if (t.due <= limit && (!best || t.due < best.due || (t.due === best.due && t.id < best.id))) best = t;
    return best;
  }

  /** Move time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.mono + ms;
    for (let t = this.next(end); t; t = this.next(end)) {
      this.mono = t.due;
      this.fire(t);
    }
    this.mono = end;
  }

  /** Like advance(), but lets promise callbacks run after each timer (for async code under test). */
  async advanceAsync(ms: number): Promise<void> {
    const end = this.mono + ms;
    await flush();
    for (let t = this.next(end); t; t = this.next(end)) {
      this.mono = t.due;
      this.fire(t);
      await flush();
    }
    this.mono = end;
    await flush();
  }

  /** Shift wall-clock time without firing timers (clock skew, certificate expiry). */
  jumpWall(ms: number): void {
    this.wall += ms;
  }

  private fire(t: Timer): void {
    if (t.every !== undefined) t.due += t.every;
    else this.timers.delete(t.id);
    t.fn();
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}
