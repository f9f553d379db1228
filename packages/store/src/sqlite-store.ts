// SqliteStore: the embedded default Store. One SQLite file per server. Owns the schema, the global
// index, the changelog and its reaping, and the watch registry. Must never hand out a row that was
// not committed, and never let the index go down.
//
// Durability: WAL with synchronous=FULL. In WAL mode, synchronous=NORMAL only fsyncs at checkpoints,
// so a write we already acknowledged to an HTTP client can vanish on power loss (a process kill alone
// would not lose it, the OS still holds the pages; a machine crash would). FULL fsyncs the WAL on
// every commit, which is what "an acknowledged write survives" needs; the cost is one fsync per
// write transaction, which the API amortises by making each request one transaction.

import { createHash } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { canonicalJson, MeshError, systemClock, type Clock, type Logger } from '@meshfed/core';
import type { ListOptions, Store, StoreChange, StoredRow, WatchKey, WriteOp } from './types.js';
import { WatchRegistry, touchedKeys, watchKeyStrings } from './watchers.js';

export interface SqliteStoreOptions {
  /** File path, or ':memory:' for an in-memory store (tests, compliance suite). */
  path: string;
  /** Changelog entries older than this are reaped (default 1 h)... */
  changelogMaxAgeMs?: number;
  /** ...and never more than this many are kept (default 100,000). */
  changelogMaxEntries?: number;
  /** How often the reaper runs (default 60 s). */
  reapIntervalMs?: number;
}

export interface SqliteStoreDeps {
  logger: Logger;
  clock?: Clock;
}

export const defaultSqliteStoreOptions = {
  changelogMaxAgeMs: 60 * 60 * 1000,
  changelogMaxEntries: 100_000,
  reapIntervalMs: 60_000,
} as const;

// Versioned migrations; PRAGMA user_version holds how many have been applied.
const migrations: readonly string[] = [
  `CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE rows (
     tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, secondary TEXT NOT NULL DEFAULT '',
     create_index INTEGER NOT NULL, modify_index INTEGER NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID;
   CREATE INDEX rows_secondary ON rows (tbl, secondary);
   CREATE TABLE changes (
     seq INTEGER PRIMARY KEY AUTOINCREMENT, idx INTEGER NOT NULL, tbl TEXT NOT NULL, key TEXT NOT NULL,
     op TEXT NOT NULL, value TEXT, secondaries TEXT NOT NULL, at_ms INTEGER NOT NULL);
   CREATE INDEX changes_idx ON changes (idx);
   CREATE TABLE replication_cursors (source TEXT PRIMARY KEY, idx INTEGER NOT NULL);
   INSERT INTO meta (name, value) VALUES ('index', '0'), ('changelog_floor', '0');`,
  `CREATE TABLE blobs (name TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

interface RowRecord {
  tbl: string;
  key: string;
  value: string;
  secondary: string;
  create_index: number;
  modify_index: number;
}

interface ChangeRecord {
  idx: number;
  tbl: string;
  key: string;
  op: string;
  value: string | null;
  secondaries: string;
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly opts: Required<Omit<SqliteStoreOptions, 'path'>>;
  private readonly watches: WatchRegistry;
  private index: number;
  private reaper: ReturnType<Clock['setInterval']> | undefined;
  private closed = false;
  private readonly pending: {
    ops: readonly WriteOp[];
    resolve: (i: number) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private readonly stmts;

  constructor(options: SqliteStoreOptions, deps: SqliteStoreDeps) {
    this.clock = deps.clock ?? systemClock;
    this.logger = deps.logger;
    this.opts = { ...defaultSqliteStoreOptions, ...stripUndefined(options) } as Required<
      Omit<SqliteStoreOptions, 'path'>
    >;
    try {
      if (options.path !== ':memory:') {
        mkdirSync(dirname(options.path), { recursive: true });
        // The file holds CA keys among other things: create it owner-only before SQLite opens it.
        closeSync(openSync(options.path, 'a', 0o600));
        chmodSync(options.path, 0o600);
      }
      this.db = new Database(options.path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
    } catch (err) {
      throw new MeshError('MESH_ERR_STORE_OPEN', `cannot open store ${options.path}: ${String(err)}`, {
        cause: err,
      });
    }
    this.migrate();
    this.stmts = {
      get: this.db.prepare<[string, string], RowRecord>('SELECT * FROM rows WHERE tbl = ? AND key = ?'),
      listAll: this.db.prepare<[string], RowRecord>('SELECT * FROM rows WHERE tbl = ? ORDER BY key'),
      listSec: this.db.prepare<[string, string], RowRecord>(
        'SELECT * FROM rows WHERE tbl = ? AND secondary = ? ORDER BY key',
      ),
      listPrefix: this.db.prepare<[string, string, string], RowRecord>(
        'SELECT * FROM rows WHERE tbl = ? AND key >= ? AND key < ? ORDER BY key',
      ),
      upsert: this.db.prepare(
        `INSERT INTO rows (tbl, key, value, secondary, create_index, modify_index) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value, secondary = excluded.secondary,
         modify_index = excluded.modify_index`,
      ),
      del: this.db.prepare('DELETE FROM rows WHERE tbl = ? AND key = ?'),
      delTable: this.db.prepare<[string], RowRecord>('SELECT * FROM rows WHERE tbl = ?'),
      addChange: this.db.prepare(
        'INSERT INTO changes (idx, tbl, key, op, value, secondaries, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      setMeta: this.db.prepare('INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)'),
      getMeta: this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE name = ?'),
      changesSince: this.db.prepare<[number], ChangeRecord>(
        'SELECT idx, tbl, key, op, value, secondaries FROM changes WHERE idx > ? ORDER BY seq',
      ),
      getCursor: this.db.prepare<[string], { idx: number }>(
        'SELECT idx FROM replication_cursors WHERE source = ?',
      ),
      setCursor: this.db.prepare('INSERT OR REPLACE INTO replication_cursors (source, idx) VALUES (?, ?)'),
      getBlob: this.db.prepare<[string], { value: string }>('SELECT value FROM blobs WHERE name = ?'),
      putBlob: this.db.prepare('INSERT OR REPLACE INTO blobs (name, value) VALUES (?, ?)'),
    };
    this.index = Number(this.stmts.getMeta.get('index')?.value ?? '0');
    const floor = Number(this.stmts.getMeta.get('changelog_floor')?.value ?? '0');
    this.watches = new WatchRegistry(floor);
    // Rebuild the per-key last-change indexes from the changelog we still have.
    for (const c of this.stmts.changesSince.iterate(floor)) {
      for (const k of touchedKeys(c.tbl, c.key, JSON.parse(c.secondaries) as string[]))
        this.watches.noteIndex(k, c.idx);
    }
    this.reaper = this.clock.setInterval(() => this.reap(), this.opts.reapIntervalMs);
    this.reaper.unref();
  }

  private migrate(): void {
    const version = Number(this.db.pragma('user_version', { simple: true }));
    for (let v = version; v < migrations.length; v++) {
      try {
        this.db.transaction(() => {
          this.db.exec(migrations[v]!);
          this.db.pragma(`user_version = ${v + 1}`);
        })();
      } catch (err) {
        throw new MeshError('MESH_ERR_STORE_MIGRATION', `migration ${v + 1} failed: ${String(err)}`, {
          cause: err,
        });
      }
    }
  }

  currentIndex(): number {
    return this.index;
  }

  get<T = unknown>(table: string, key: string): StoredRow<T> | undefined {
    const r = this.stmts.get.get(table, key);
    return r ? toRow<T>(r) : undefined;
  }

  list<T = unknown>(table: string, opts: ListOptions = {}): StoredRow<T>[] {
    let rows: RowRecord[];
    if (opts.secondary !== undefined) rows = this.stmts.listSec.all(table, opts.secondary);
    else if (opts.prefix !== undefined)
      rows = this.stmts.listPrefix.all(table, opts.prefix, opts.prefix + '\uffff');
    else rows = this.stmts.listAll.all(table);
    return rows.map((r) => toRow<T>(r));
  }

  write(ops: readonly WriteOp[]): number {
    this.assertOpen();
    const touched: string[] = [];
    const next = this.index + 1;
    const changed = this.db.transaction(() => this.applyOps(ops, next, this.clock.now(), touched))();
    if (changed === 0) return this.index;
    this.index = next;
    this.watches.changed(touched, next);
    return next;
  }

  /**
   * Group commit: write() for callers that can wait a moment. Every op set queued in the same turn
   * of the event loop is applied in one SQLite transaction (one fsync), each in its own savepoint
   * with its own index, so a failed check-and-set fails only its own set. Resolves after the commit.
   */
  writeAsync(ops: readonly WriteOp[]): Promise<number> {
    this.assertOpen();
    return new Promise((resolve, reject) => {
      this.pending.push({ ops, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    if (this.closed) {
      for (const b of batch) b.reject(new MeshError('MESH_ERR_CLOSED', 'the store is closed'));
      return;
    }
    const results: ({ index: number; touched: string[] } | { error: unknown })[] = [];
    let index = this.index;
    const now = this.clock.now();
    try {
      this.db.transaction(() => {
        for (const b of batch) {
          const touched: string[] = [];
          try {
            const next = index + 1;
            const changed = this.db.transaction(() => this.applyOps(b.ops, next, now, touched))();
            if (changed > 0) index = next;
            results.push({ index: changed > 0 ? next : index, touched });
          } catch (error) {
            results.push({ error });
          }
        }
      })();
    } catch (err) {
      for (const b of batch) b.reject(err);
      return;
    }
    this.index = index;
    batch.forEach((b, i) => {
      const r = results[i]!;
      if ('error' in r) return b.reject(r.error);
      if (r.touched.length > 0) this.watches.changed(r.touched, r.index);
      b.resolve(r.index);
    });
  }

  /** Apply one op set inside the caller's transaction at index `next`; returns how many changed. */
  private applyOps(ops: readonly WriteOp[], next: number, now: number, touched: string[]): number {
    let changed = 0;
    for (const op of ops) {
      const existing = this.stmts.get.get(op.table, op.key);
      if (op.cas !== undefined) {
        const ok = op.cas === 0 ? !existing : existing?.modify_index === op.cas;
        if (!ok)
          throw new MeshError(
            'MESH_ERR_STORE_CAS_FAILED',
            `check-and-set failed for ${op.table}/${op.key}: expected ModifyIndex ${op.cas}, found ${existing?.modify_index ?? 'no entry'}`,
          );
      }
      if (op.op === 'put') {
        const json = JSON.stringify(op.value ?? null);
        const secondary = op.secondary ?? '';
        if (existing && existing.value === json && existing.secondary === secondary) continue;
        this.stmts.upsert.run(op.table, op.key, json, secondary, existing?.create_index ?? next, next);
        const secs =
          existing && existing.secondary !== secondary ? [secondary, existing.secondary] : [secondary];
        this.stmts.addChange.run(next, op.table, op.key, 'put', json, JSON.stringify(secs), now);
        touched.push(...touchedKeys(op.table, op.key, secs));
      } else {
        if (!existing) continue;
        this.stmts.del.run(op.table, op.key);
        const secs = [existing.secondary];
        this.stmts.addChange.run(next, op.table, op.key, 'delete', null, JSON.stringify(secs), now);
        touched.push(...touchedKeys(op.table, op.key, secs));
      }
      changed++;
    }
    if (changed > 0) this.stmts.setMeta.run('index', String(next));
    return changed;
  }

  indexOf(keys: readonly WatchKey[]): number {
    return this.watches.indexOf(keys.map(watchKeyStrings));
  }

  waitFor(keys: readonly WatchKey[], fromIndex: number, signal: AbortSignal): Promise<number> {
    return this.watches.wait(keys.map(watchKeyStrings), fromIndex, signal);
  }

  watchTables(tables: readonly string[], fromIndex: number, signal: AbortSignal): Promise<number> {
    return this.waitFor(
      tables.map((table) => ({ table })),
      fromIndex,
      signal,
    );
  }

  /** How many waiters are parked (metrics and the watcher benchmark). */
  waiterCount(): number {
    return this.watches.waiterCount();
  }

  changesSince(
    index: number,
    tables: readonly string[],
    limit = 10_000,
  ): { changes: StoreChange[]; index: number } | { tooOld: true } {
    const floor = Number(this.stmts.getMeta.get('changelog_floor')?.value ?? '0');
    if (index < floor) return { tooOld: true };
    const want = new Set(tables);
    const changes: StoreChange[] = [];
    let upTo = this.index;
    for (const c of this.stmts.changesSince.iterate(index)) {
      if (!want.has(c.tbl)) continue;
      if (changes.length >= limit && c.idx !== changes[changes.length - 1]!.index) {
        // Stop at a transaction boundary so a consumer never applies half a transaction.
        upTo = changes[changes.length - 1]!.index;
        break;
      }
      changes.push(toChange(c));
    }
    return { changes, index: upTo };
  }

  snapshot(tables: readonly string[]): { index: number; rows: StoreChange[] } {
    const rows: StoreChange[] = [];
    const read = this.db.transaction(() => {
      for (const t of [...tables].sort())
        for (const r of this.stmts.listAll.all(t))
          rows.push({ index: r.modify_index, table: t, key: r.key, op: 'put', value: JSON.parse(r.value) });
      return this.index;
    });
    return { index: read(), rows };
  }

  applyReplicated(
    source: string,
    upToIndex: number,
    changes: readonly StoreChange[],
    opts: { replaceAll?: readonly string[] } = {},
  ): void {
    this.assertOpen();
    const next = this.index + 1;
    const now = this.clock.now();
    const touched: string[] = [];
    this.db.transaction(() => {
      for (const t of opts.replaceAll ?? []) {
        for (const r of this.stmts.delTable.all(t)) {
          this.stmts.del.run(t, r.key);
          this.stmts.addChange.run(next, t, r.key, 'delete', null, JSON.stringify([r.secondary]), now);
          touched.push(...touchedKeys(t, r.key, [r.secondary]));
        }
      }
      for (const c of changes) {
        const existing = this.stmts.get.get(c.table, c.key);
        if (c.op === 'put') {
          const json = JSON.stringify(c.value ?? null);
          this.stmts.upsert.run(c.table, c.key, json, '', existing?.create_index ?? next, next);
          this.stmts.addChange.run(next, c.table, c.key, 'put', json, '[""]', now);
        } else {
          if (!existing) continue;
          this.stmts.del.run(c.table, c.key);
          this.stmts.addChange.run(next, c.table, c.key, 'delete', null, '[""]', now);
        }
        touched.push(...touchedKeys(c.table, c.key, ['']));
      }
      this.stmts.setCursor.run(source, upToIndex);
      this.stmts.setMeta.run('index', String(next));
    })();
    this.index = next;
    this.watches.changed(touched, next);
  }

  replicationCursor(source: string): number {
    return this.stmts.getCursor.get(source)?.idx ?? 0;
  }

  contentHash(tables: readonly string[]): string {
    const h = createHash('sha256');
    for (const t of [...tables].sort())
      for (const r of this.stmts.listAll.all(t))
        h.update(canonicalJson([t, r.key, JSON.parse(r.value) as unknown]) + '\n');
    return h.digest('hex');
  }

  getBlob(name: string): unknown {
    const r = this.stmts.getBlob.get(name);
    return r ? (JSON.parse(r.value) as unknown) : undefined;
  }

  putBlob(name: string, value: unknown): void {
    this.assertOpen();
    this.stmts.putBlob.run(name, JSON.stringify(value));
  }

  /** Drop changelog entries past their age or over the count limit; raise the floor accordingly. */
  reap(): number {
    if (this.closed) return 0;
    const cutoff = this.clock.now() - this.opts.changelogMaxAgeMs;
    const count = (this.db.prepare('SELECT COUNT(*) AS n FROM changes').get() as { n: number }).n;
    const over = Math.max(0, count - this.opts.changelogMaxEntries);
    let removed = 0;
    this.db.transaction(() => {
      const byAge = this.db.prepare('SELECT MAX(idx) AS m FROM changes WHERE at_ms < ?').get(cutoff) as {
        m: number | null;
      };
      let floorIdx = byAge.m ?? 0;
      if (over > 0) {
        const r = this.db.prepare('SELECT idx FROM changes ORDER BY seq LIMIT 1 OFFSET ?').get(over - 1) as
          { idx: number } | undefined;
        floorIdx = Math.max(floorIdx, r?.idx ?? 0);
      }
      if (floorIdx <= 0) return;
      removed = this.db.prepare('DELETE FROM changes WHERE idx <= ?').run(floorIdx).changes;
      const floor = Number(this.stmts.getMeta.get('changelog_floor')?.value ?? '0');
      if (floorIdx > floor) {
        this.stmts.setMeta.run('changelog_floor', String(floorIdx));
        this.watches.setFloor(floorIdx);
      }
    })();
    if (removed > 0) this.logger.debug({ removed }, 'changelog reaped');
    return removed;
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.clock.clearInterval(this.reaper);
    this.reaper = undefined;
    this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new MeshError('MESH_ERR_CLOSED', 'the store is closed');
  }
}

function toRow<T>(r: RowRecord): StoredRow<T> {
  return {
    table: r.tbl,
    key: r.key,
    value: JSON.parse(r.value) as T,
    secondary: r.secondary,
    createIndex: r.create_index,
    modifyIndex: r.modify_index,
  };
}

function toChange(c: ChangeRecord): StoreChange {
  const out: StoreChange = {
    index: c.idx,
    table: c.tbl,
    key: c.key,
    op: c.op === 'delete' ? 'delete' : 'put',
  };
  if (c.value !== null) out.value = JSON.parse(c.value) as unknown;
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
