// Verification used everywhere a certificate arrives: chain building against a bundle of several
// roots (cross-signed certificates included), validity with a small skew allowance, name
// constraints, SPIFFE ID extraction and trust-domain checks, and node:tls hooks.

import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { MeshError, parseSpiffeId, type ErrorCode, type SpiffeId } from '@meshfed/core';
import { parseCertParts, permittedNames } from './certs.js';
import { splitPems } from './der.js';

export const DEFAULT_SKEW_MS = 60_000;

export interface VerifyOptions {
  /** Wall-clock ms (from the component's Clock). */
  now: number;
  /** Allowed clock skew for notBefore/notAfter, default 60 s. */
  skewMs?: number;
  /** When set, the leaf's SPIFFE ID must be in this trust domain. */
  trustDomain?: string;
  /** When set, the leaf's SPIFFE ID must be of this kind ('service', 'server', 'mesh-gateway', ...). */
  kind?: SpiffeId['kind'];
  /** Accept a CA certificate as the first certificate (checking an intermediate). Default false. */
  leafMayBeCa?: boolean;
}

export type ChainResult =
  | { ok: true; leaf: X509Certificate; path: X509Certificate[]; spiffeId: string | undefined }
  | { ok: false; code: ErrorCode; reason: string };

type CertInput = string | X509Certificate;
// Parsed certificates and signature checks are immutable facts about bytes, so they are cached
// (bounded; cleared when full). Validity times and name constraints are still checked every call.
const CACHE_MAX = 2048;
const parsed = new Map<string, X509Certificate>();
const issuedCache = new Map<string, boolean>();
const remember = <V>(m: Map<string, V>, k: string, v: V): V => {
  if (m.size >= CACHE_MAX) m.clear();
  m.set(k, v);
  return v;
};
const parsePem = (pem: string): X509Certificate =>
  parsed.get(pem) ?? remember(parsed, pem, new X509Certificate(pem));
const toCerts = (list: readonly CertInput[]): X509Certificate[] =>
  list.flatMap((c) => (typeof c === 'string' ? splitPems(c).map(parsePem) : [c]));

const bad = (code: ErrorCode, reason: string): ChainResult => ({ ok: false, code, reason });

/**
 * Verify `certs` (leaf first, then any untrusted intermediates / cross-signed roots, in any order)
 * against `roots`. Never throws for bad input.
 */
export function verifyChain(
  certs: readonly CertInput[],
  roots: readonly CertInput[],
  opts: VerifyOptions,
): ChainResult {
  let presented: X509Certificate[];
  let anchors: X509Certificate[];
  try {
    presented = toCerts(certs);
    anchors = toCerts(roots);
  } catch (err) {
    return bad(
      'MESH_ERR_CA_CHAIN_INVALID',
      `certificate cannot be parsed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const leaf = presented[0];
  if (!leaf) return bad('MESH_ERR_CA_CHAIN_INVALID', 'no certificate presented');
  if (anchors.length === 0) return bad('MESH_ERR_CA_UNTRUSTED', 'no trusted roots');
  if (leaf.ca && !opts.leafMayBeCa)
    return bad('MESH_ERR_CA_CHAIN_INVALID', 'the presented certificate is a CA certificate, not a leaf');
  const pool = presented.slice(1);

  const issuedBy = (c: X509Certificate, issuer: X509Certificate): boolean => {
    const key = `${c.fingerprint256}|${issuer.fingerprint256}`;
    const known = issuedCache.get(key);
    if (known !== undefined) return known;
    let ok: boolean;
    try {
      ok = c.checkIssued(issuer) && c.verify(issuer.publicKey);
    } catch {
      ok = false;
    }
    return remember(issuedCache, key, ok);
  };
  // Depth-first search for a path ending at a trust anchor; prefer anchors at every step.
  const search = (
    cur: X509Certificate,
    used: Set<X509Certificate>,
    depth: number,
  ): X509Certificate[] | undefined => {
    for (const r of anchors) {
      if (r.fingerprint256 === cur.fingerprint256) return [cur];
      if (issuedBy(cur, r)) return [cur, r];
    }
    if (depth >= 6) return undefined;
    for (const i of pool) {
      if (used.has(i) || !i.ca || !issuedBy(cur, i)) continue;
      used.add(i);
      const rest = search(i, used, depth + 1);
      used.delete(i);
      if (rest) return [cur, ...rest];
    }
    return undefined;
  };
  const path = search(leaf, new Set(), 0);
  if (!path)
    return bad(
      'MESH_ERR_CA_UNTRUSTED',
      'certificate does not chain to a trusted root (foreign CA or missing intermediate)',
    );

  const skew = opts.skewMs ?? DEFAULT_SKEW_MS;
  for (const c of path) {
    if (Date.parse(c.validFrom) - skew > opts.now)
      return bad(
        'MESH_ERR_CA_CERT_NOT_YET_VALID',
        `certificate ${c.subject.replace(/\n/g, ',')} is not valid before ${new Date(c.validFrom).toISOString()}`,
      );
    if (Date.parse(c.validTo) + skew < opts.now)
      return bad(
        'MESH_ERR_CA_CERT_EXPIRED',
        `certificate ${c.subject.replace(/\n/g, ',')} expired at ${new Date(c.validTo).toISOString()}`,
      );
  }
  for (let i = 1; i < path.length; i++) {
    if (!path[i]!.ca) return bad('MESH_ERR_CA_CHAIN_INVALID', 'an issuer in the chain is not a CA');
  }
  // Name constraints of every CA in the path apply to every certificate below it.
  for (let i = path.length - 1; i >= 1; i--) {
    const nc = permittedNames(parseCertParts(path[i]!.raw));
    if (!nc) continue;
    for (let j = 0; j < i; j++) {
      const { uris, dns } = sanOf(path[j]!);
      for (const d of dns)
        if (nc.dns.length > 0 && !nc.dns.some((p) => dnsWithin(d, p)))
          return bad('MESH_ERR_CA_NAME_CONSTRAINT', `DNS name ${d} is outside the issuer's name constraint`);
      for (const u of uris) {
        const host = uriHost(u);
        if (nc.uriHosts.length > 0 && !nc.uriHosts.some((p) => dnsWithin(host, p)))
          return bad('MESH_ERR_CA_NAME_CONSTRAINT', `URI ${u} is outside the issuer's name constraint`);
      }
    }
  }
  const spiffeId = spiffeIdOf(leaf);
  if (opts.kind !== undefined) {
    const id = spiffeId === undefined ? undefined : parseSpiffeId(spiffeId);
    if (!id?.ok || id.value.kind !== opts.kind)
      return bad(
        'MESH_ERR_CA_IDENTITY_DENIED',
        `leaf ${spiffeId ?? '(no SPIFFE ID)'} is not a ${opts.kind} identity`,
      );
  }
  if (opts.trustDomain !== undefined) {
    if (!spiffeId) return bad('MESH_ERR_CA_TRUST_DOMAIN', 'leaf has no SPIFFE ID');
    const id = parseSpiffeId(spiffeId);
    if (!id.ok) return bad('MESH_ERR_CA_TRUST_DOMAIN', `leaf SPIFFE ID is malformed: ${id.reason}`);
    if (id.value.trustDomain !== opts.trustDomain)
      return bad(
        'MESH_ERR_CA_TRUST_DOMAIN',
        `leaf is in trust domain ${id.value.trustDomain}, expected ${opts.trustDomain}`,
      );
  }
  return { ok: true, leaf, path, spiffeId };
}

/** verifyChain that throws a MeshError with the reason. */
export function assertChain(
  certs: readonly CertInput[],
  roots: readonly CertInput[],
  opts: VerifyOptions,
): X509Certificate {
  const r = verifyChain(certs, roots, opts);
  if (!r.ok) throw new MeshError(r.code, r.reason);
  return r.leaf;
}

const dnsWithin = (name: string, permitted: string): boolean => {
  const n = name.toLowerCase();
  const p = permitted.toLowerCase().replace(/^\./, '');
  return n === p || n.endsWith('.' + p);
};
const uriHost = (u: string): string => {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/:?#]*)/i.exec(u);
  return m ? m[1]! : '';
};

function splitAltNames(s: string | undefined): { uris: string[]; dns: string[] } {
  const uris: string[] = [];
  const dns: string[] = [];
  for (const part of (s ?? '').split(/,\s*/)) {
    if (part.startsWith('URI:')) uris.push(part.slice(4));
    else if (part.startsWith('DNS:')) dns.push(part.slice(4));
  }
  return { uris, dns };
}

export function sanOf(cert: X509Certificate): { uris: string[]; dns: string[] } {
  return splitAltNames(cert.subjectAltName);
}

/** The SPIFFE ID (URI SAN starting with spiffe://) of a certificate, if it has exactly one. */
export function spiffeIdOf(cert: X509Certificate | PeerCertificate | string): string | undefined {
  let alt: string | undefined;
  if (typeof cert === 'string') alt = new X509Certificate(cert).subjectAltName;
  else if (cert instanceof X509Certificate) alt = cert.subjectAltName;
  else alt = cert.subjectaltname;
  const ids = splitAltNames(alt).uris.filter((u) => u.startsWith('spiffe://'));
  return ids.length === 1 ? ids[0] : undefined;
}

/** Parsed SPIFFE identity of a certificate, or undefined. */
export function spiffeIdentityOf(cert: X509Certificate | PeerCertificate | string): SpiffeId | undefined {
  const s = spiffeIdOf(cert);
  if (!s) return undefined;
  const r = parseSpiffeId(s);
  return r.ok ? r.value : undefined;
}

export type SpiffeExpectation = string | ((id: SpiffeId, uri: string) => boolean);

/**
 * A `checkServerIdentity` for tls.connect: the server's URI SAN must be the expected SPIFFE ID
 * (or satisfy the predicate) instead of matching a hostname.
 */
export function spiffeCheckServerIdentity(
  expected: SpiffeExpectation,
): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const uri = spiffeIdOf(cert);
    if (!uri) return new MeshError('MESH_ERR_CA_IDENTITY_DENIED', 'server certificate has no SPIFFE ID');
    if (typeof expected === 'string') {
      return uri === expected
        ? undefined
        : new MeshError('MESH_ERR_CA_IDENTITY_DENIED', `server is ${uri}, expected ${expected}`);
    }
    const id = parseSpiffeId(uri);
    if (!id.ok)
      return new MeshError('MESH_ERR_CA_IDENTITY_DENIED', `server SPIFFE ID is malformed: ${id.reason}`);
    return expected(id.value, uri)
      ? undefined
      : new MeshError('MESH_ERR_CA_IDENTITY_DENIED', `server ${uri} is not an accepted identity`);
  };
}

/** The SPIFFE identity of the authenticated peer of a TLS socket (undefined if none / unauthorized). */
export function peerIdentity(socket: TLSSocket): { uri: string; id: SpiffeId } | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerX509Certificate();
  if (!cert) return undefined;
  const uri = spiffeIdOf(cert);
  if (!uri) return undefined;
  const id = parseSpiffeId(uri);
  return id.ok ? { uri, id: id.value } : undefined;
}
