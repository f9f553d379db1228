// The Store interface: what the server, and later federation and a distributed backend, see of the
// state store. Rows are plain JSON under (table, key); every write transaction raises one global
// index; every change is kept in a changelog long enough for watchers and replication to see it.

import type { ChangeOp, StoreChange } from '@meshfed/core';

export type { ChangeOp, StoreChange };

export interface StoredRow<T = unknown> {
  table: string;
  key: string;
  value: T;
  /** Secondary lookup key (e.g. the service name of a service instance); '' when none. */
  secondary: string;
  createIndex: number;
  modifyIndex: number;
}

export interface WriteOp {
  table: string;
  key: string;
  op: ChangeOp;
  value?: unknown;
  /** Secondary lookup key for list() and watches; '' when none. */
  secondary?: string;
  /**
   * Check-and-set: 0 = the row must not exist; n > 0 = the row's ModifyIndex must be n.
   * A failed check aborts the whole transaction with MESH_ERR_STORE_CAS_FAILED.
   */
  cas?: number;
}

/**
 * What a watcher waits on. `table` alone = any change in the table; with `key` = that row; with
 * `secondary` = any row whose secondary key is (or was) that value.
 */
export interface WatchKey {
  table: string;
  key?: string;
  secondary?: string;
}

export interface ListOptions {
  secondary?: string;
  prefix?: string;
}

export interface Store {
  currentIndex(): number;
  get<T = unknown>(table: string, key: string): StoredRow<T> | undefined;
  list<T = unknown>(table: string, opts?: ListOptions): StoredRow<T>[];
  /**
   * Apply ops in one transaction. Returns the index of the transaction, or the current index when
   * every op was a no-op (a put of an identical value, a delete of a missing row): Consul's indexes
   * do not move for idempotent writes either, which keeps blocking queries from waking for nothing.
   */
  write(ops: readonly WriteOp[]): number;
  /** Like write(), but may share one commit (one fsync) with other writes of the same moment. */
  writeAsync(ops: readonly WriteOp[]): Promise<number>;
  /** The highest index at which anything under these watch keys changed (>= 1). */
  indexOf(keys: readonly WatchKey[]): number;
  /** Resolve with the new index once anything under `keys` changed after `fromIndex`. */
  waitFor(keys: readonly WatchKey[], fromIndex: number, signal: AbortSignal): Promise<number>;

  // --- replication (contracts.md) ---
  changesSince(
    index: number,
    tables: readonly string[],
    limit?: number,
  ): { changes: StoreChange[]; index: number } | { tooOld: true };
  snapshot(tables: readonly string[]): { index: number; rows: StoreChange[] };
  applyReplicated(
    source: string,
    upToIndex: number,
    changes: readonly StoreChange[],
    opts?: { replaceAll?: readonly string[] },
  ): void;
  replicationCursor(source: string): number;
  contentHash(tables: readonly string[]): string;
  watchTables(tables: readonly string[], fromIndex: number, signal: AbortSignal): Promise<number>;

  /** An opaque JSON blob per name (the CA's state lives here). */
  getBlob(name: string): unknown;
  putBlob(name: string, value: unknown): void;

  close(): void;
}
