// What the server needs from the CA (packages/ca's CertificateAuthority satisfies it structurally),
// and the SQLite-backed CaStateStorage the daemon hands the CA. The server never touches keys.

import type { CaRootsResponse, IssuedLeaf } from '@meshfed/core';
import type { Store } from '@meshfed/store';

export type LeafIdentity =
  | { kind: 'service'; service: string; namespace?: string; partition?: string; datacenter?: string }
  | { kind: 'server'; node: string }
  | { kind: 'mesh-gateway' };

export type { CaRootsResponse, IssuedLeaf };

export interface ServerCa {
  ready(): boolean;
  trustDomain: string;
  rootsResponse(): CaRootsResponse;
  issueLeaf(id: LeafIdentity): Promise<IssuedLeaf>;
  configuration(): unknown;
  setConfiguration(body: unknown): Promise<void>;
  onChange(listener: (what: 'roots' | 'intermediate' | 'config') => void): () => void;
}

/** CaStateStorage (contracts.md) over the server's store: one opaque JSON blob. */
export class SqliteCaStateStorage<S = unknown> {
  constructor(
    private readonly store: Pick<Store, 'getBlob' | 'putBlob'>,
    private readonly blobName = 'ca_state',
  ) {}

  load(): Promise<S | undefined> {
    return Promise.resolve(this.store.getBlob(this.blobName) as S | undefined);
  }

  save(state: S): Promise<void> {
    this.store.putBlob(this.blobName, state);
    return Promise.resolve();
  }
}
