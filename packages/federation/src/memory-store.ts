// MemoryReplicationStore: the ReplicationStore contract in memory. Real code (tests and the bench
// use it) and the reference the SQLite store follows: one global index, a bounded change log per
// index, per-source cursors, and watchers woken on every commit.

import { canonicalJson } from '@meshfed/core';
import { createHash } from 'node:crypto';
import type { ChangesSinceResult, ReplicationStore, StoreChange } from './interfaces.js';

interface Row {
  value: unknown;
  modifyIndex: number;
}

export interface MemoryReplicationStoreOptions {
  /** Changes older than this many entries are forgotten; changesSince then says tooOld. */
  historyLimit?: number;
}

export class MemoryReplicationStore implements ReplicationStore {
  private index = 0;
  private readonly tables = new Map<string, Map<string, Row>>();
  private log: StoreChange[] = [];
  /** Lowest index still fully covered by the log (changes after it are all present). */
  private logFloor = 0;
  private readonly cursors = new Map<string, number>();
  private readonly watchers = new Set<{
    tables: readonly string[];
    from: number;
    wake: (i: number) => void;
  }>();
  private readonly historyLimit: number;

  constructor(options: MemoryReplicationStoreOptions = {}) {
    this.historyLimit = options.historyLimit ?? 100_000;
  }

  currentIndex(): number {
    return this.index;
  }

  /** A local write transaction (the server's normal write path). Returns its index. */
  write(changes: readonly Omit<StoreChange, 'index'>[]): number {
    const idx = ++this.index;
    for (const c of changes) this.applyOne({ ...c, index: idx });
    this.commit(
      idx,
      changes.map((c) => ({ ...c, index: idx })),
    );
    return idx;
  }

  put(table: string, key: string, value: unknown): number {
    return this.write([{ table, key, op: 'put', value }]);
  }

  delete(table: string, key: string): number {
    return this.write([{ table, key, op: 'delete' }]);
  }

  get(table: string, key: string): unknown {
    return this.tables.get(table)?.get(key)?.value;
  }

  keys(table: string): string[] {
    return [...(this.tables.get(table)?.keys() ?? [])].sort();
  }

  changesSince(index: number, tables: readonly string[], limit = 1000): ChangesSinceResult {
    if (index < this.logFloor) return { tooOld: true };
    const want = new Set(tables);
    const out: StoreChange[] = [];
    // The log is in index order; find the first entry after `index` by binary search.
    let lo = 0;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.log[mid]!.index <= index) lo = mid + 1;
      else hi = mid;
    }
    let upTo = this.index;
    for (let i = lo; i < this.log.length; i++) {
      const c = this.log[i]!;
      // Never split one transaction across batches: stop only at a transaction boundary.
      if (out.length >= limit && c.index !== out[out.length - 1]!.index) {
        upTo = out[out.length - 1]!.index;
        break;
      }
      if (want.has(c.table)) out.push(c);
    }
    return { changes: out, index: upTo };
  }

  snapshot(tables: readonly string[]): { index: number; rows: StoreChange[] } {
    const rows: StoreChange[] = [];
    for (const t of tables)
      for (const [key, row] of [...(this.tables.get(t) ?? new Map<string, Row>())].sort(([a], [b]) =>
        a < b ? -1 : a > b ? 1 : 0,
      ))
        rows.push({ index: row.modifyIndex, table: t, key, op: 'put', value: row.value });
    return { index: this.index, rows };
  }

  applyReplicated(
    source: string,
    upToIndex: number,
    changes: readonly StoreChange[],
    opts: { replaceAll?: readonly string[] } = {},
  ): void {
    // Validate first so a bad batch changes nothing (the SQLite store gets this from its transaction).
    for (const c of changes)
      if (typeof c.table !== 'string' || typeof c.key !== 'string' || (c.op !== 'put' && c.op !== 'delete'))
        throw new TypeError(`bad change ${JSON.stringify(c)}`);
    const idx = ++this.index;
    const logged: StoreChange[] = [];
    for (const t of opts.replaceAll ?? []) {
      for (const key of this.tables.get(t)?.keys() ?? [])
        logged.push({ index: idx, table: t, key, op: 'delete' });
      this.tables.get(t)?.clear();
    }
    for (const c of changes) {
      const local =
        c.op === 'put'
          ? { index: idx, table: c.table, key: c.key, op: c.op, value: c.value }
          : { index: idx, table: c.table, key: c.key, op: c.op };
      this.applyOne(local);
      logged.push(local);
    }
    this.cursors.set(source, upToIndex);
    this.commit(idx, logged);
  }

  replicationCursor(source: string): number {
    return this.cursors.get(source) ?? 0;
  }

  contentHash(tables: readonly string[]): string {
    const h = createHash('sha256');
    for (const t of [...tables].sort()) {
      const rows = [...(this.tables.get(t) ?? new Map<string, Row>())].sort(([a], [b]) =>
        a < b ? -1 : a > b ? 1 : 0,
      );
      for (const [key, row] of rows) h.update(`${t}\u0000${key}\u0000${canonicalJson(row.value)}\n`);
    }
    return h.digest('hex');
  }

  watchTables(tables: readonly string[], fromIndex: number, signal: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const w = {
        tables,
        from: fromIndex,
        wake: (i: number): void => {
          this.watchers.delete(w);
          signal.removeEventListener('abort', onAbort);
          resolve(i);
        },
      };
      const onAbort = (): void => {
        this.watchers.delete(w);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.watchers.add(w);
      // A change after fromIndex that already happened wakes at once.
      const r = this.changesSince(fromIndex, tables, 1);
      if ('tooOld' in r || r.changes.length > 0) w.wake(this.index);
    });
  }

  private applyOne(c: StoreChange): void {
    let t = this.tables.get(c.table);
    if (!t) this.tables.set(c.table, (t = new Map()));
    if (c.op === 'put') t.set(c.key, { value: c.value, modifyIndex: c.index });
    else t.delete(c.key);
  }

  private commit(idx: number, changes: StoreChange[]): void {
    for (const c of changes) this.log.push(c);
    if (this.log.length > this.historyLimit) {
      const drop = this.log.length - this.historyLimit;
      this.logFloor = this.log[drop - 1]!.index;
      this.log = this.log.slice(drop);
    }
    const touched = new Set(changes.map((c) => c.table));
    for (const w of [...this.watchers]) if (idx > w.from && w.tables.some((t) => touched.has(t))) w.wake(idx);
  }
}
