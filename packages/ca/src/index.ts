/**
 * @packageDocumentation
 * The federated CA: roots (primary), intermediates (secondary CSR ↔ primary signs), SPIFFE leaves,
 * rotation with cross-signing, retirement, renewal timing, signing limits, state storage, and the
 * verification / node:tls helpers every component uses.
 */
export * from './ca.js';
export * from './verify.js';
export * from './tls.js';
export * from './renewal.js';
export * from './limiter.js';
export * from './storage.js';
export {
  createCsr,
  parseCsr,
  generateKey,
  generateLeafKey,
  privateKeyPem,
  keyInfo,
  type PrivateKeyType,
  type ParsedCsr,
  type SanSet,
} from './certs.js';
export { splitPems } from './der.js';
