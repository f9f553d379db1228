// AES-GCM keyring, memberlist security.go: payload = vsn(1) | nonce(12) | ciphertext | tag(16).
// Version 1: no padding (memberlist protocol >= 2). Version 0: PKCS#7 to 16 bytes before sealing.
// The first key is the primary (used to encrypt); decryption tries every key. Keys never logged.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { MeshError } from '@meshfed/core';

const NONCE = 12;
const TAG = 16;
export const ENCRYPT_OVERHEAD = 1 + NONCE + TAG;

function checkKey(key: Uint8Array): void {
  if (key.length !== 16 && key.length !== 24 && key.length !== 32)
    throw new MeshError('MESH_ERR_GOSSIP_KEY', 'a gossip key must be 16, 24 or 32 bytes (base64 of that)', {
      details: { length: key.length },
    });
}

/** Decode a base64 key as `serf keygen` prints it; throws MESH_ERR_GOSSIP_KEY. */
export function parseKey(b64: string): Buffer {
  const key = Buffer.from(b64, 'base64');
  if (key.toString('base64') !== b64.trim())
    throw new MeshError('MESH_ERR_GOSSIP_KEY', 'a gossip key must be base64');
  checkKey(key);
  return key;
}

/** A fresh 32-byte key, base64, like `serf keygen`. */
export function keygen(): string {
  return randomBytes(32).toString('base64');
}

function cipherName(key: Uint8Array): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  return key.length === 16 ? 'aes-128-gcm' : key.length === 24 ? 'aes-192-gcm' : 'aes-256-gcm';
}

export function encryptPayload(vsn: 0 | 1, key: Uint8Array, msg: Uint8Array, aad?: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE);
  let plain: Uint8Array = msg;
  if (vsn === 0) {
    const pad = 16 - (msg.length % 16);
    plain = Buffer.concat([msg, Buffer.alloc(pad, pad)]);
  }
  const c = createCipheriv(cipherName(key), key, nonce);
  if (aad) c.setAAD(aad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([Buffer.from([vsn]), nonce, body, c.getAuthTag()]);
}

function decryptOne(key: Uint8Array, buf: Uint8Array, aad?: Uint8Array): Buffer | undefined {
  const vsn = buf[0]!;
  const nonce = buf.subarray(1, 1 + NONCE);
  const body = buf.subarray(1 + NONCE, buf.length - TAG);
  const tag = buf.subarray(buf.length - TAG);
  try {
    const d = createDecipheriv(cipherName(key), key, nonce);
    if (aad) d.setAAD(aad);
    d.setAuthTag(tag);
    const plain = Buffer.concat([d.update(body), d.final()]);
    if (vsn === 0) {
      const pad = plain[plain.length - 1] ?? 0;
      if (pad < 1 || pad > 16 || pad > plain.length) return undefined;
      return plain.subarray(0, plain.length - pad);
    }
    return plain;
  } catch {
    return undefined;
  }
}

export class Keyring {
  private keys: Buffer[] = [];

  constructor(keys: readonly (string | Uint8Array)[] = []) {
    for (const k of keys) this.add(typeof k === 'string' ? parseKey(k) : Buffer.from(k));
  }

  get size(): number {
    return this.keys.length;
  }
  get primary(): Buffer | undefined {
    return this.keys[0];
  }
  list(): string[] {
    return this.keys.map((k) => k.toString('base64'));
  }
  /** Install a key (no-op if present); it becomes primary only if the ring was empty. */
  add(key: Uint8Array): void {
    checkKey(key);
    if (this.keys.some((k) => k.equals(key))) return;
    this.keys.push(Buffer.from(key));
  }
  use(key: Uint8Array): void {
    const i = this.keys.findIndex((k) => k.equals(key));
    if (i < 0) throw new MeshError('MESH_ERR_GOSSIP_KEY', 'requested key is not in the keyring');
    const [k] = this.keys.splice(i, 1);
    this.keys.unshift(k!);
  }
  remove(key: Uint8Array): void {
    const i = this.keys.findIndex((k) => k.equals(key));
    if (i === 0) throw new MeshError('MESH_ERR_GOSSIP_KEY', 'removing the primary key is not allowed');
    if (i > 0) this.keys.splice(i, 1);
  }
  encrypt(msg: Uint8Array, aad?: Uint8Array): Buffer {
    const k = this.keys[0];
    if (!k) throw new MeshError('MESH_ERR_GOSSIP_KEY', 'keyring is empty');
    return encryptPayload(1, k, msg, aad);
  }
  /** Try every key; undefined when none opens it or the framing is bad. */
  decrypt(buf: Uint8Array, aad?: Uint8Array): Buffer | undefined {
    if (buf.length < ENCRYPT_OVERHEAD) return undefined;
    const vsn = buf[0]!;
    if (vsn > 1) return undefined;
    for (const k of this.keys) {
      const plain = decryptOne(k, buf, aad);
      if (plain) return plain;
    }
    return undefined;
  }
}
