// The narrow interfaces federation consumes. Per CONVENTIONS the consumer declares what it needs:
// the store, the CA and the gossip pool implement these; the CLI's server daemon adapts them.
// Nothing here does I/O.

import type { CaRoot, CaRootsResponse, ChangeOp, ChangesSinceResult, StoreChange } from '@meshfed/core';

export type { CaRoot, CaRootsResponse, ChangeOp, ChangesSinceResult, StoreChange };

/** What replication needs from the store (packages/store's SqliteStore implements it). */
export interface ReplicationStore {
  currentIndex(): number;
  changesSince(index: number, tables: readonly string[], limit?: number): ChangesSinceResult;
  snapshot(tables: readonly string[]): { index: number; rows: StoreChange[] };
  /**
   * ONE transaction: applies changes (replaceAll: delete every row of those tables first), stores
   * the cursor source -> upToIndex, raises the local index once, wakes watchers.
   */
  applyReplicated(
    source: string,
    upToIndex: number,
    changes: readonly StoreChange[],
    opts?: { replaceAll?: readonly string[] },
  ): void;
  replicationCursor(source: string): number;
  contentHash(tables: readonly string[]): string;
  watchTables(tables: readonly string[], fromIndex: number, signal: AbortSignal): Promise<number>;
}

/** What federation needs from the CA (packages/ca's CertificateAuthority implements it). */
export interface FederationCa {
  readonly isPrimary: boolean;
  rootsResponse(): CaRootsResponse;
  /** Primary: sign a secondary DC's intermediate CSR. */
  signIntermediateCsr(
    csrPem: string,
    datacenter: string,
  ): Promise<{ certPem: string; rootsResponse: CaRootsResponse }>;
  /** Secondary: a fresh intermediate key and its CSR. */
  createIntermediateCsr(): Promise<string>;
  installIntermediate(certPem: string, roots: CaRootsResponse): Promise<void>;
  applyPrimaryRoots(roots: CaRootsResponse): Promise<void>;
  /** Secondary with no intermediate, past half life, or not under the active root. */
  needsIntermediate(): boolean;
  onChange(listener: (what: 'roots' | 'intermediate' | 'config') => void): () => void;
}

export type MemberStatus = 'alive' | 'suspect' | 'failed' | 'left';

/** A server in the WAN pool, as federation needs it. */
export interface WanMember {
  /** Node name. */
  name: string;
  dc: string;
  /** host:port of its federation (server) port. */
  fedAddr: string;
  /** host:port of its WAN gossip port, handed to a joining DC so it can join the pool too. */
  gossipAddr?: string;
  status: MemberStatus;
}

/** What federation needs from the gossip WAN pool. */
export interface Membership {
  members(): WanMember[];
  onChange(listener: () => void): () => void;
}

/** TLS material for the channel, read for every new connection so rotation applies. */
export interface TlsMaterial {
  key: string;
  /** Leaf first, then intermediates. */
  cert: string;
  /** Trust bundle: every root PEM. */
  ca: string | string[];
}

export interface JoinTokenRecord {
  id: string;
  /** sha256 hex of the secret; the secret itself is never stored. */
  secretHash: string;
  createdAt: number;
  expiresAt: number;
  usedAt?: number;
  usedBy?: string;
  /** Set when an operator revoked the token before it was used. */
  revokedAt?: number;
}

/** Where join tokens persist (the server adds a SQLite one). */
export interface TokenStore {
  put(record: JoinTokenRecord): void;
  get(id: string): JoinTokenRecord | undefined;
  /** Atomically mark used; returns false if it already was. */
  markUsed(id: string, at: number, by: string): boolean;
  /** Atomically mark revoked; returns false if unknown, used or already revoked. */
  revoke(id: string, at: number): boolean;
  list(): JoinTokenRecord[];
}

/** What a DC publishes to the others. */
export interface ExportedService {
  name: string;
  namespace?: string;
  partition?: string;
  protocol?: string;
  subsets?: string[];
  meta?: Record<string, string>;
  healthy: number;
  total: number;
}

export interface MeshGatewayState {
  node: string;
  service: string;
  /** WAN address host:port. */
  wanAddress: string;
  healthy: boolean;
}

export interface DcExport {
  services: ExportedService[];
  meshGateways: MeshGatewayState[];
}
