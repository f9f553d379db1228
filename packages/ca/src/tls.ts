// node:tls option helpers for mutual TLS with SPIFFE leaves.

import type { ConnectionOptions, TlsOptions } from 'node:tls';
import { spiffeCheckServerIdentity, type SpiffeExpectation } from './verify.js';

export interface MtlsMaterial {
  /** Leaf followed by its chain (IssuedLeaf.CertPEM). */
  certPem: string;
  privateKeyPem: string;
  /** The trust bundle: every root PEM (CertificateAuthority.trustBundlePems()). */
  caPems: readonly string[];
}

/** Server side: require and verify a client certificate against the bundle; TLS 1.3 minimum. */
export function mtlsServerOptions(m: MtlsMaterial): TlsOptions {
  return {
    cert: m.certPem,
    key: m.privateKeyPem,
    ca: [...m.caPems],
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  };
}

/** Client side: verify the server against the bundle and check its SPIFFE ID, not a hostname. */
export function mtlsClientOptions(m: MtlsMaterial, expectServer: SpiffeExpectation): ConnectionOptions {
  return {
    cert: m.certPem,
    key: m.privateKeyPem,
    ca: [...m.caPems],
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    checkServerIdentity: spiffeCheckServerIdentity(expectServer),
  };
}
