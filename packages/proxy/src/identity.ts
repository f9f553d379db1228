// Peer identity: the SPIFFE ID in a certificate's URI SAN. Kept small and isolated so that the
// CA package's verification helpers (spiffeIdOf / peerIdentity) can replace it in one place.
// It never decides trust: chain verification happened in the TLS handshake; this only reads
// the name that the chain vouches for.

import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { fail, parseSpiffeId, type Result, type SpiffeId } from '@meshfed/core';

/** The URI SAN entries of a subjectAltName string as Node formats it ("URI:a, DNS:b", JSON-quoted when odd). */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const out: string[] = [];
  // Node quotes a value with JSON string syntax when it contains separators; split respecting quotes.
  const re = /(\w+):("(?:[^"\\]|\\.)*"|[^,]*)(?:,\s*|$)/g;
  for (const m of subjectAltName.matchAll(re)) {
    if (m[1] !== 'URI') continue;
    let v = m[2] ?? '';
    if (v.startsWith('"')) {
      try {
        v = JSON.parse(v) as string;
      } catch {
        continue;
      }
    }
    out.push(v.trim());
  }
  return out;
}

/** The single SPIFFE ID of a certificate's SAN; several spiffe URIs or none is an error. */
export function spiffeIdFromSan(subjectAltName: string | undefined): Result<SpiffeId> {
  const ids = uriSans(subjectAltName).filter((u) => u.startsWith('spiffe://'));
  if (ids.length === 0) return fail('certificate has no SPIFFE URI SAN');
  if (ids.length > 1) return fail('certificate has more than one SPIFFE URI SAN');
  return parseSpiffeId(ids[0]!);
}

/** The SPIFFE ID of the peer of an established TLS socket. */
export function peerIdentity(socket: TLSSocket): Result<SpiffeId> {
  const cert = socket.getPeerX509Certificate();
  if (!cert) return fail('peer presented no certificate');
  return spiffeIdFromSan(cert.subjectAltName);
}

/** Service identity check: a service SPIFFE ID in `trustDomain`, optionally of one service. */
export function serviceIdentityProblem(
  id: SpiffeId,
  trustDomain: string,
  expect?: { service: string; namespace?: string; datacenter?: string },
): string | undefined {
  if (id.trustDomain !== trustDomain.toLowerCase())
    return `trust domain ${id.trustDomain} is not ours (${trustDomain})`;
  if (id.kind !== 'service') return `identity is a ${id.kind}, not a service`;
  if (expect) {
    if (id.service !== expect.service) return `identity is service ${id.service}, expected ${expect.service}`;
    if (id.namespace !== (expect.namespace ?? 'default'))
      return `identity is in namespace ${id.namespace}, expected ${expect.namespace ?? 'default'}`;
    if (expect.datacenter && id.datacenter !== expect.datacenter)
      return `identity is in datacenter ${id.datacenter}, expected ${expect.datacenter}`;
  }
  return undefined;
}

/**
 * The DER of the peer's leaf certificate of an established (or just verified) TLS socket, read
 * from the serialized session (`getSession()`: OpenSSL's SSL_SESSION ASN.1, where the peer
 * certificate is the `[3]` field). This costs ~13 µs on this box where `getPeerCertificate(false)`
 * costs ~60 µs, `getPeerX509Certificate()` ~140 µs and `getPeerCertificate(true)` ~400–500 µs
 * (they copy and decode the certificate, OpenSSL 3.0's key decoder being the expensive part).
 * Undefined when the session cannot be read or has no peer certificate: callers fall back to
 * Node's certificate accessors.
 */
export function peerCertDer(socket: TLSSocket): Buffer | undefined {
  let s: Buffer | undefined;
  try {
    s = socket.getSession();
  } catch {
    return undefined;
  }
  if (!s) return undefined;
  const outer = derTlv(s, 0);
  if (!outer || outer.tag !== 0x30) return undefined;
  for (let p = outer.start; p < outer.end;) {
    const f = derTlv(s, p);
    if (!f || f.end > outer.end) return undefined;
    if (f.tag === 0xa3) {
      const cert = derTlv(s, f.start);
      return cert && cert.tag === 0x30 && cert.end <= f.end ? s.subarray(f.start, cert.end) : undefined;
    }
    p = f.end;
  }
  return undefined;
}

/** One DER tag-length-value at `o`: its tag and content range, or undefined when malformed. */
function derTlv(b: Buffer, o: number): { tag: number; start: number; end: number } | undefined {
  if (o + 2 > b.length) return undefined;
  const tag = b[o]!;
  let len = b[o + 1]!;
  let p = o + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || p + n > b.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[p++]!;
  }
  const end = p + len;
  return end <= b.length ? { tag, start: p, end } : undefined;
}

/** The SPIFFE ID in a DER certificate's URI SAN (decodes the certificate: cache the result). */
export function spiffeIdFromDer(der: Buffer): Result<SpiffeId> {
  let san: string | undefined;
  try {
    san = new X509Certificate(der).subjectAltName;
  } catch (err) {
    return fail(`certificate cannot be parsed: ${(err as Error).message}`);
  }
  return spiffeIdFromSan(san);
}
