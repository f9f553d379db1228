// Serf's user-event coalescing (coalesce.go + coalesce_user.go): user events sent with
// coalesce=true are held for up to `periodMs` after the first one arrives, or until `quiescentMs`
// pass with no new one; per event name only those with the newest Lamport time are kept, then all
// kept events are delivered. Events with coalesce=false pass straight through.

import type { Clock, TimerHandle } from '@meshfed/core';
import type { UserEvent } from './gossip-pool.js';

export interface CoalesceOptions {
  periodMs: number;
  quiescentMs: number;
}

export class UserEventCoalescer {
  private latest = new Map<string, { ltime: bigint; events: UserEvent[] }>();
  private quantum: TimerHandle | undefined;
  private quiet: TimerHandle | undefined;
  /** Events folded away because a newer one with the same name arrived within the period. */
  coalesced = 0;

  constructor(
    private readonly opts: CoalesceOptions,
    private readonly clock: Clock,
    private readonly deliver: (e: UserEvent) => void,
  ) {}

  handle(e: UserEvent): void {
    if (!e.coalesce || this.opts.periodMs <= 0) {
      this.deliver(e);
      return;
    }
    const cur = this.latest.get(e.name);
    if (!cur || cur.ltime < e.ltime) {
      if (cur) this.coalesced += cur.events.length;
      this.latest.set(e.name, { ltime: e.ltime, events: [e] });
    } else if (cur.ltime === e.ltime) cur.events.push(e);
    else this.coalesced++;
    this.quantum ??= this.clock.setTimeout(() => this.flush(), this.opts.periodMs);
    this.clock.clearTimeout(this.quiet);
    this.quiet = this.clock.setTimeout(
      () => this.flush(),
      Math.min(this.opts.quiescentMs, this.opts.periodMs),
    );
  }

  /** Deliver everything held now (also on shutdown, as serf does). */
  flush(): void {
    this.clock.clearTimeout(this.quantum);
    this.clock.clearTimeout(this.quiet);
    this.quantum = undefined;
    this.quiet = undefined;
    const held = this.latest;
    this.latest = new Map();
    for (const { events } of held.values()) for (const e of events) this.deliver(e);
  }
}
