// Waiters keyed by watch key, so a change wakes exactly the waiters of the table, row and secondary
// key it touched, and nobody else. Also remembers the last index at which each watch key changed,
// which is what blocking queries return as X-Consul-Index.

import type { WatchKey } from './types.js';

export function watchKeyStrings(k: WatchKey): string {
  if (k.key !== undefined) return `${k.table}\u0000k\u0000${k.key}`;
  if (k.secondary !== undefined) return `${k.table}\u0000s\u0000${k.secondary}`;
  return k.table;
}

/** The watch keys a change of (table, key, secondary) touches. */
export function touchedKeys(table: string, key: string, secondaries: readonly string[]): string[] {
  const out = [table, `${table}\u0000k\u0000${key}`];
  for (const s of secondaries) out.push(`${table}\u0000s\u0000${s}`);
  return out;
}

interface Waiter {
  keys: string[];
  resolve: (index: number) => void;
}

export class WatchRegistry {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly lastIndex = new Map<string, number>();

  constructor(private floor: number) {}

  /** Index below which we do not know per-key history (changelog reaped or before process start). */
  setFloor(floor: number): void {
    this.floor = floor;
  }

  indexOf(keys: readonly string[]): number {
    let max = this.floor;
    for (const k of keys) max = Math.max(max, this.lastIndex.get(k) ?? 0);
    return Math.max(1, max);
  }

  noteIndex(key: string, index: number): void {
    if ((this.lastIndex.get(key) ?? 0) < index) this.lastIndex.set(key, index);
  }

  /** Record a committed change and wake its waiters. */
  changed(keys: readonly string[], index: number): void {
    const woken = new Set<Waiter>();
    for (const k of keys) {
      this.noteIndex(k, index);
      const set = this.waiters.get(k);
      if (set) for (const w of set) woken.add(w);
    }
    for (const w of woken) {
      this.remove(w);
      w.resolve(index);
    }
  }

  wait(keys: readonly string[], fromIndex: number, signal: AbortSignal): Promise<number> {
    const now = this.indexOf(keys);
    if (now > fromIndex) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const onAbort = (): void => {
        this.remove(w);
        reject(signal.reason as Error);
      };
      const w: Waiter = {
        keys: [...keys],
        resolve: (i) => {
          signal.removeEventListener('abort', onAbort);
          resolve(i);
        },
      };
      for (const k of w.keys) {
        let set = this.waiters.get(k);
        if (!set) this.waiters.set(k, (set = new Set()));
        set.add(w);
      }
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  waiterCount(): number {
    const all = new Set<Waiter>();
    for (const s of this.waiters.values()) for (const w of s) all.add(w);
    return all.size;
  }

  private remove(w: Waiter): void {
    for (const k of w.keys) {
      const set = this.waiters.get(k);
      if (!set) continue;
      set.delete(w);
      if (set.size === 0) this.waiters.delete(k);
    }
  }
}
