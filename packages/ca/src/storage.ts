// Where CA state (roots with their private keys, this DC's intermediate) lives between restarts.
// The server adds a SQLite implementation; this package has memory and file. The file is written
// owner-only (0600) via a temp file + rename; with `encryptionKey` (32 bytes, from config) the file
// is AES-256-GCM encrypted, so keys at rest are protected by both.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename } from 'node:fs/promises';
import { MeshError } from '@meshfed/core';
import type { PrivateKeyType } from './certs.js';

export interface StoredRoot {
  id: string;
  name: string;
  certPem: string;
  /** PKCS#8 PEM. Absent for roots this DC does not own (a secondary's copy of the primary's roots). */
  keyPem?: string;
  intermediateCerts: string[];
  active: boolean;
  privateKeyType: PrivateKeyType;
  privateKeyBits: number;
  /** Wall ms when it stopped being active (drives retirement). */
  rotatedOutAt?: number;
  createIndex: number;
  modifyIndex: number;
}

export interface CaConfigState {
  leafTtlMs: number;
  intermediateTtlMs: number;
  rootTtlMs: number;
  privateKeyType: PrivateKeyType;
  privateKeyBits: number;
  csrMaxPerSecond: number;
  csrMaxConcurrent: number;
  createIndex: number;
  modifyIndex: number;
}

export interface CaState {
  version: 1;
  trustDomain: string;
  clusterId: string;
  index: number;
  config: CaConfigState;
  roots: StoredRoot[];
  /** This DC's intermediate (secondaries), with its key. */
  intermediate?: { certPem: string; keyPem: string };
  /** Key of an intermediate CSR not yet answered. */
  pendingIntermediateKeyPem?: string;
}

export interface CaStateStorage {
  load(): Promise<CaState | undefined>;
  save(state: CaState): Promise<void>;
}

export class MemoryCaStateStorage implements CaStateStorage {
  private json: string | undefined;
  async load(): Promise<CaState | undefined> {
    return this.json === undefined ? undefined : (JSON.parse(this.json) as CaState);
  }
  async save(state: CaState): Promise<void> {
    this.json = JSON.stringify(state);
  }
}

const MAGIC = 'meshfed-ca-aes256gcm-v1';

export class FileCaStateStorage implements CaStateStorage {
  private readonly key: Buffer | undefined;

  /** `encryptionKey`: 32 raw bytes or 44-char base64 (e.g. `openssl rand -base64 32`). */
  constructor(
    private readonly path: string,
    options: { encryptionKey?: Buffer | string } = {},
  ) {
    const k = options.encryptionKey;
    this.key = k === undefined ? undefined : typeof k === 'string' ? Buffer.from(k, 'base64') : k;
    if (this.key && this.key.length !== 32)
      throw new MeshError(
        'MESH_ERR_CA_CONFIG_INVALID',
        'CA state encryption key must be 32 bytes (base64 of 32 random bytes)',
      );
  }

  async load(): Promise<CaState | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new MeshError('MESH_ERR_CA_STATE', `cannot read CA state ${this.path}`, { cause: err });
    }
    try {
      const obj = JSON.parse(text) as Record<string, unknown>;
      if (obj['format'] === MAGIC) {
        if (!this.key) throw new Error('the file is encrypted and no encryption key is configured');
        const d = createDecipheriv('aes-256-gcm', this.key, Buffer.from(String(obj['iv']), 'base64'));
        d.setAuthTag(Buffer.from(String(obj['tag']), 'base64'));
        const plain = Buffer.concat([d.update(Buffer.from(String(obj['data']), 'base64')), d.final()]);
        return JSON.parse(plain.toString('utf8')) as CaState;
      }
      if (this.key) throw new Error('the file is not encrypted but an encryption key is configured');
      return obj as unknown as CaState;
    } catch (err) {
      throw new MeshError(
        'MESH_ERR_CA_STATE',
        `CA state ${this.path} cannot be loaded: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  async save(state: CaState): Promise<void> {
    let text = JSON.stringify(state);
    if (this.key) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', this.key, iv);
      const data = Buffer.concat([c.update(text, 'utf8'), c.final()]);
      text = JSON.stringify({
        format: MAGIC,
        iv: iv.toString('base64'),
        tag: c.getAuthTag().toString('base64'),
        data: data.toString('base64'),
      });
    }
    const tmp = `${this.path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(tmp, 0o600);
    await rename(tmp, this.path);
  }
}
