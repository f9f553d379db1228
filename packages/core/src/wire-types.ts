// Wire shapes more than one package speaks, defined once. The Consul JSON the CA answers with
// (/v1/connect/ca/roots, /v1/agent/connect/ca/leaf/<service>), which the server serves, the
// federation carries between DCs and the sidecar reads; and the store change that replication
// streams from the primary's store into each secondary's.

/** One root of /v1/connect/ca/roots, exactly as Consul names its fields. */
export interface CaRoot {
  /** SHA-1 fingerprint of the root certificate, colon hex. */
  ID: string;
  Name: string;
  SerialNumber: number;
  /** SHA-256 of the public key, colon hex. */
  SigningKeyID: string;
  ExternalTrustDomain: string;
  NotBefore: string;
  NotAfter: string;
  RootCert: string;
  /** The chain under this root a verifier may need (cross-signed certificates during rotation). */
  IntermediateCerts: string[] | null;
  Active: boolean;
  PrivateKeyType: string;
  PrivateKeyBits: number;
  CreateIndex: number;
  ModifyIndex: number;
}

/** /v1/connect/ca/roots and /v1/agent/connect/ca/roots. */
export interface CaRootsResponse {
  ActiveRootID: string;
  TrustDomain: string;
  Roots: CaRoot[];
}

/** /v1/agent/connect/ca/leaf/<service>: a leaf, its chain up to (not including) the root, its key. */
export interface IssuedLeaf {
  SerialNumber: string;
  /** The leaf followed by its intermediates. */
  CertPEM: string;
  PrivateKeyPEM: string;
  Service: string;
  ServiceURI: string;
  ValidAfter: string;
  ValidBefore: string;
  Namespace?: string;
  Partition?: string;
  CreateIndex: number;
  ModifyIndex: number;
}

export type ChangeOp = 'put' | 'delete';

/** One row change, in the order the store's global index gave it. */
export interface StoreChange {
  /** Index of the write transaction that made it (local to the store that reports it). */
  index: number;
  table: string;
  key: string;
  op: ChangeOp;
  /** The row as plain JSON for 'put'. */
  value?: unknown;
}

export type ChangesSinceResult = { changes: StoreChange[]; index: number } | { tooOld: true };

/**
 * JSON with object keys sorted at every level and undefined members dropped: equal content gives
 * equal text, so stores on both ends of replication hash the same rows the same way.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .filter((k) => obj[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
    .join(',')}}`;
}
