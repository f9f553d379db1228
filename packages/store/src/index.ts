/**
 * @packageDocumentation
 * meshfed's state store: rows of JSON under (table, key), one global index per write transaction,
 * a changelog with tombstones for watchers and replication, and watches that wake exactly the
 * affected waiters. SqliteStore is the embedded default; the Store interface is what others use.
 */
export * from './types.js';
export * from './sqlite-store.js';
export * from './watchers.js';
export { storeCompliance, storeGroupCommitCompliance } from './compliance.js';
