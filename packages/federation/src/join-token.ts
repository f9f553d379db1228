// Join tokens: single-use, short-lived, and pinning the primary CA's root fingerprint, so a new
// DC needs nothing copied by hand but this one string. Only a hash of the secret is stored.
//
// Wire form: `meshfed-join-v1.` + base64url(JSON { id, dc, addrs, fp, s, exp }).

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { MeshError } from '@meshfed/core';
import type { JoinTokenRecord, TokenStore } from './interfaces.js';

const PREFIX = 'meshfed-join-v1.';

export interface JoinTokenPayload {
  /** Token ID (not secret). */
  id: string;
  /** The primary datacenter. */
  dc: string;
  /** host:port of the primary's federation port (or gateways that route to it). */
  addrs: string[];
  /** sha256 hex of the primary's active root certificate (DER). */
  fp: string;
  /** The secret, base64url. */
  s: string;
  /** Expiry, ms since the epoch (informational; the primary decides). */
  exp: number;
}

export function encodeJoinToken(p: JoinTokenPayload): string {
  return PREFIX + Buffer.from(JSON.stringify(p)).toString('base64url');
}

export function decodeJoinToken(token: string): JoinTokenPayload {
  const bad = (why: string): MeshError =>
    new MeshError('MESH_ERR_FED_TOKEN_INVALID', `join token is invalid: ${why}`);
  if (typeof token !== 'string' || !token.startsWith(PREFIX)) throw bad(`it must start with "${PREFIX}"`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(token.slice(PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    throw bad('it does not decode');
  }
  const o = v as Partial<JoinTokenPayload> | null;
  if (
    !o ||
    typeof o.id !== 'string' ||
    typeof o.dc !== 'string' ||
    !Array.isArray(o.addrs) ||
    !o.addrs.every((a) => typeof a === 'string') ||
    typeof o.fp !== 'string' ||
    !/^[0-9a-f]{64}$/.test(o.fp) ||
    typeof o.s !== 'string' ||
    typeof o.exp !== 'number'
  )
    throw bad('a field is missing or has the wrong type');
  return o as JoinTokenPayload;
}

/** What a token says, without its secret: for `meshfed join` to show before dialling. */
export function describeJoinToken(token: string): {
  id: string;
  primaryDatacenter: string;
  addrs: string[];
  fingerprint: string;
  expiresAt: number;
} {
  const p = decodeJoinToken(token);
  return { id: p.id, primaryDatacenter: p.dc, addrs: p.addrs, fingerprint: p.fp, expiresAt: p.exp };
}

/** A token that can no longer be used or revoked. */
export function tokenSpent(r: JoinTokenRecord): boolean {
  return r.usedAt !== undefined || r.revokedAt !== undefined;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function newTokenSecret(): { id: string; secret: string } {
  return { id: randomBytes(8).toString('hex'), secret: randomBytes(32).toString('base64url') };
}

/**
 * Check a presented token against the store without consuming it. Throws INVALID / EXPIRED / USED.
 */
export function checkJoinToken(store: TokenStore, id: string, secret: string, now: number): JoinTokenRecord {
  const rec = typeof id === 'string' ? store.get(id) : undefined;
  const presented = Buffer.from(hashSecret(typeof secret === 'string' ? secret : ''), 'hex');
  if (!rec || !timingSafeEqual(presented, Buffer.from(rec.secretHash, 'hex')))
    throw new MeshError('MESH_ERR_FED_TOKEN_INVALID', 'join token is not known to this primary');
  if (rec.revokedAt !== undefined)
    throw new MeshError(
      'MESH_ERR_FED_TOKEN_REVOKED',
      `join token was revoked at ${new Date(rec.revokedAt).toISOString()}; create a new one`,
    );
  if (rec.usedAt !== undefined)
    throw new MeshError(
      'MESH_ERR_FED_TOKEN_USED',
      `join token was already used by ${rec.usedBy ?? 'another datacenter'}; create a new one`,
    );
  if (now >= rec.expiresAt)
    throw new MeshError(
      'MESH_ERR_FED_TOKEN_EXPIRED',
      `join token expired at ${new Date(rec.expiresAt).toISOString()}; create a new one`,
    );
  return rec;
}

/** A token as an operator sees it: never the secret or its hash. */
export interface JoinTokenInfo {
  id: string;
  createdAt: number;
  expiresAt: number;
  /** valid = can still be used; the others say why not. */
  state: 'valid' | 'used' | 'expired' | 'revoked';
  usedAt?: number;
  usedBy?: string;
  revokedAt?: number;
}

export function joinTokenInfo(rec: JoinTokenRecord, now: number): JoinTokenInfo {
  const state =
    rec.revokedAt !== undefined
      ? 'revoked'
      : rec.usedAt !== undefined
        ? 'used'
        : now >= rec.expiresAt
          ? 'expired'
          : 'valid';
  return {
    id: rec.id,
    createdAt: rec.createdAt,
    expiresAt: rec.expiresAt,
    state,
    ...(rec.usedAt !== undefined ? { usedAt: rec.usedAt } : {}),
    ...(rec.usedBy !== undefined ? { usedBy: rec.usedBy } : {}),
    ...(rec.revokedAt !== undefined ? { revokedAt: rec.revokedAt } : {}),
  };
}

export class MemoryTokenStore implements TokenStore {
  private readonly records = new Map<string, JoinTokenRecord>();
  put(record: JoinTokenRecord): void {
    this.records.set(record.id, { ...record });
  }
  get(id: string): JoinTokenRecord | undefined {
    const r = this.records.get(id);
    return r ? { ...r } : undefined;
  }
  markUsed(id: string, at: number, by: string): boolean {
    return this.spend(id, { usedAt: at, usedBy: by });
  }
  revoke(id: string, at: number): boolean {
    return this.spend(id, { revokedAt: at });
  }
  private spend(id: string, patch: Partial<JoinTokenRecord>): boolean {
    const r = this.records.get(id);
    if (!r || tokenSpent(r)) return false;
    Object.assign(r, patch);
    return true;
  }
  list(): JoinTokenRecord[] {
    return [...this.records.values()].map((r) => ({ ...r }));
  }
}
