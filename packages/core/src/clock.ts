// Time, injected. Components never call Date.now() or bare timers: they get a Clock, so gossip
// timers, CA renewal and replication can be tested with a manual clock instead of sleeping.

export interface TimerHandle {
  /** Let the process exit while this timer is pending (real clock only; no-op otherwise). */
  unref(): void;
}

export interface Clock {
  /** Wall-clock milliseconds since the epoch (certificate validity, timestamps shown to users). */
  now(): number;
  /** Monotonic milliseconds, for durations and deadlines. */
  monotonic(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle | undefined): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout> | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as ReturnType<typeof setInterval> | undefined),
};

/** Resolve after `ms` on the given clock, or reject when `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Full jitter: a random delay in [base/2, base) so that many clients do not retry in step. */
export function jitter(base: number, random: () => number = Math.random): number {
  return base / 2 + random() * (base / 2);
}

/** Exponential backoff with jitter, capped: attempt 0 → ~min, doubling up to max. */
export function backoff(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const raw = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return jitter(raw, random);
}
