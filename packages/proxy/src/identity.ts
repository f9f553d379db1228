// Peer identity: the SPIFFE ID in a certificate's URI SAN. Kept small and isolated so that the
// CA package's verification helpers (spiffeIdOf / peerIdentity) can replace it in one place.
// It never decides trust: chain verification happened in the TLS handshake; this only reads
// the name that the chain vouches for.

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
