// When to renew a certificate: Consul's soft expiry (agent/cache-types/connect_ca_leaf.go).
// Renewal falls at a random point between 60 % and 90 % of the lifetime; past 90 % (or for a
// certificate shorter than 10 minutes) it is due now. On a root change every holder renews at a
// random point in a jitter window (default 30 s) so a rotation does not stampede the CA.

import type { Clock, Logger, TimerHandle } from '@meshfed/core';

export const SOFT_EXPIRY_START = 0.6;
export const SOFT_EXPIRY_END = 0.9;
export const SHORT_LIVED_MS = 10 * 60_000;
export const DEFAULT_ROOT_CHANGE_JITTER_MS = 30_000;

/** Wall-clock ms at which a certificate valid [validAfter, validBefore] should be renewed. */
export function softExpiry(
  validAfter: number,
  validBefore: number,
  now: number,
  random: () => number = Math.random,
): number {
  const life = validBefore - validAfter;
  if (life < SHORT_LIVED_MS) return now;
  const start = validAfter + life * SOFT_EXPIRY_START;
  const end = validAfter + life * SOFT_EXPIRY_END;
  if (now >= end) return now;
  return Math.max(now, Math.round(start + random() * (end - start)));
}

export interface RenewalSchedulerOptions {
  rootChangeJitterMs?: number;
  random?: () => number;
}

interface Entry {
  validAfter: number;
  validBefore: number;
  renew: () => Promise<void>;
  timer: TimerHandle | undefined;
  dueAt: number;
}

/** Keeps one renewal timer per key (a service's leaf, the intermediate, ...). */
export class RenewalScheduler {
  private readonly entries = new Map<string, Entry>();
  private readonly random: () => number;
  private readonly jitterMs: number;
  private closed = false;

  constructor(
    options: RenewalSchedulerOptions,
    private readonly deps: { clock: Clock; logger: Logger },
  ) {
    this.random = options.random ?? Math.random;
    this.jitterMs = options.rootChangeJitterMs ?? DEFAULT_ROOT_CHANGE_JITTER_MS;
  }

  /** (Re)schedule `renew` for a certificate; the callback should call schedule() again with the new cert. */
  schedule(key: string, validAfter: number, validBefore: number, renew: () => Promise<void>): number {
    const now = this.deps.clock.now();
    return this.arm(
      key,
      { validAfter, validBefore, renew, timer: undefined, dueAt: 0 },
      softExpiry(validAfter, validBefore, now, this.random),
    );
  }

  /** Roots changed: every certificate renews at a random point in the jitter window. */
  rootsChanged(): void {
    const now = this.deps.clock.now();
    for (const [key, e] of this.entries) this.arm(key, e, now + this.random() * this.jitterMs);
  }

  /** When `key` is due (wall-clock ms), for status output and tests. */
  dueAt(key: string): number | undefined {
    return this.entries.get(key)?.dueAt;
  }

  cancel(key: string): void {
    const e = this.entries.get(key);
    if (e) this.deps.clock.clearTimeout(e.timer);
    this.entries.delete(key);
  }

  close(): void {
    this.closed = true;
    for (const key of [...this.entries.keys()]) this.cancel(key);
  }

  private arm(key: string, e: Entry, dueAt: number): number {
    if (this.closed) return dueAt;
    const old = this.entries.get(key);
    if (old) this.deps.clock.clearTimeout(old.timer);
    e.dueAt = dueAt;
    const delay = Math.max(0, dueAt - this.deps.clock.now());
    e.timer = this.deps.clock.setTimeout(() => {
      if (this.entries.get(key) !== e) return;
      this.entries.delete(key);
      e.renew().catch((err: unknown) => {
        this.deps.logger.warn(
          { key, err: err instanceof Error ? err.message : String(err) },
          'certificate renewal failed, retrying in 10s',
        );
        if (!this.closed && !this.entries.has(key)) this.arm(key, e, this.deps.clock.now() + 10_000);
      });
    }, delay);
    e.timer.unref();
    this.entries.set(key, e);
    return dueAt;
  }
}
