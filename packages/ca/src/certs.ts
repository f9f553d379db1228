// Certificates and CSRs built with our DER encoder and signed with node:crypto. One code path for
// roots, intermediates, cross-signed roots and leaves; Node's X509Certificate (OpenSSL) parses them.

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  generateKeyPair,
  randomBytes,
  sign,
  verify,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { MeshError } from '@meshfed/core';
import * as der from './der.js';

export type PrivateKeyType = 'ec' | 'rsa' | 'ed25519';

export const OID = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  rsaSha256: '1.2.840.113549.1.1.11',
  ed25519: '1.3.101.112',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  nameConstraints: '2.5.29.30',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

// ---- keys --------------------------------------------------------------------------------------

const curveOf = (bits: number): string => {
  switch (bits) {
    case 256:
      return 'prime256v1';
    case 384:
      return 'secp384r1';
    case 521:
      return 'secp521r1';
    case 224:
      return 'secp224r1';
    default:
      throw new MeshError(
        'MESH_ERR_CA_CONFIG_INVALID',
        `EC key bits must be 224, 256, 384 or 521, got ${bits}`,
      );
  }
};

export function checkKeyParams(type: PrivateKeyType, bits: number): void {
  if (type === 'ec') curveOf(bits);
  else if (type === 'rsa') {
    if (bits !== 2048 && bits !== 4096)
      throw new MeshError('MESH_ERR_CA_CONFIG_INVALID', `RSA key bits must be 2048 or 4096, got ${bits}`);
  } else if (type !== 'ed25519')
    throw new MeshError(
      'MESH_ERR_CA_CONFIG_INVALID',
      `PrivateKeyType must be ec, rsa or ed25519, got ${String(type)}`,
    );
}

export function generateKey(type: PrivateKeyType, bits: number): KeyObject {
  checkKeyParams(type, bits);
  if (type === 'ec') return generateKeyPairSync('ec', { namedCurve: curveOf(bits) }).privateKey;
  if (type === 'rsa') return generateKeyPairSync('rsa', { modulusLength: bits }).privateKey;
  return generateKeyPairSync('ed25519').privateKey;
}

/** Leaf keys are always EC P-256 (as in Consul). Async: runs on the libuv pool. */
export function generateLeafKey(): Promise<KeyObject> {
  return new Promise((resolve, reject) =>
    generateKeyPair('ec', { namedCurve: 'prime256v1' }, (err, _pub, priv) =>
      err ? reject(err) : resolve(priv),
    ),
  );
}

export const privateKeyPem = (k: KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }) as string;
export const spkiDer = (k: KeyObject): Buffer =>
  (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });

export function keyInfo(k: KeyObject): { type: PrivateKeyType; bits: number } {
  const t = k.asymmetricKeyType;
  const d = k.asymmetricKeyDetails ?? {};
  if (t === 'ec') {
    const c = d.namedCurve;
    const bits =
      c === 'prime256v1'
        ? 256
        : c === 'secp384r1'
          ? 384
          : c === 'secp521r1'
            ? 521
            : c === 'secp224r1'
              ? 224
              : 0;
    return { type: 'ec', bits };
  }
  if (t === 'rsa') return { type: 'rsa', bits: d.modulusLength ?? 0 };
  if (t === 'ed25519') return { type: 'ed25519', bits: 256 };
  return { type: 'ec', bits: 0 };
}

/** The signature AlgorithmIdentifier and node:crypto digest for a signing key. */
const sigAlgCache = new WeakMap<KeyObject, { alg: Buffer; digest: string | null }>();
function sigAlg(k: KeyObject): { alg: Buffer; digest: string | null } {
  let v = sigAlgCache.get(k);
  if (!v) sigAlgCache.set(k, (v = sigAlgOf(k)));
  return v;
}
function sigAlgOf(k: KeyObject): { alg: Buffer; digest: string | null } {
  const { type, bits } = keyInfo(k);
  if (type === 'ed25519') return { alg: der.seq(der.oid(OID.ed25519)), digest: null };
  if (type === 'rsa') return { alg: der.seq(der.oid(OID.rsaSha256), der.nul()), digest: 'sha256' };
  if (bits >= 384) return { alg: der.seq(der.oid(OID.ecdsaSha384)), digest: 'sha384' };
  return { alg: der.seq(der.oid(OID.ecdsaSha256)), digest: 'sha256' };
}

// ---- identifiers -------------------------------------------------------------------------------

export const colonHex = (b: Buffer): string => (b.toString('hex').match(/../g) ?? []).join(':');
/** SubjectKeyIdentifier: SHA-1 of the SPKI (20 bytes). SigningKeyID shows SHA-256 (Consul's). */
export const keyId = (spki: Buffer): Buffer => createHash('sha1').update(spki).digest();
export const signingKeyId = (spki: Buffer): string => colonHex(createHash('sha256').update(spki).digest());
export const newSerial = (): Buffer => {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f || 0x01;
  return b;
};

// ---- certificates ------------------------------------------------------------------------------

export interface SanSet {
  uris?: readonly string[];
  dns?: readonly string[];
}

export interface CertSpec {
  serial: Buffer;
  subject: Buffer; // DER Name
  issuer: Buffer; // DER Name
  notBefore: number;
  notAfter: number;
  spki: Buffer;
  extensions: Buffer[]; // DER Extension each
}

export const ext = (oid: string, critical: boolean, value: Buffer): Buffer =>
  critical
    ? der.seq(der.oid(oid), der.bool(true), der.octets(value))
    : der.seq(der.oid(oid), der.octets(value));

export const sanExt = (san: SanSet): Buffer =>
  ext(
    OID.subjectAltName,
    false,
    der.seq(
      ...(san.dns ?? []).map((d) => der.ctxPrim(2, Buffer.from(d))),
      ...(san.uris ?? []).map((u) => der.ctxPrim(6, Buffer.from(u))),
    ),
  );

export const basicConstraintsExt = (ca: boolean, pathLen?: number): Buffer =>
  ext(
    OID.basicConstraints,
    true,
    ca ? der.seq(der.bool(true), ...(pathLen === undefined ? [] : [der.int(pathLen)])) : der.seq(),
  );

// KeyUsage bits: 0 digitalSignature, 2 keyEncipherment, 3 dataEncipherment, 4 keyAgreement, 5 keyCertSign, 6 cRLSign
export const keyUsageExt = (bitsSet: number[]): Buffer => {
  let v = 0;
  for (const b of bitsSet) v |= 0x80 >> b;
  let unused = 0;
  while (unused < 8 && !(v & (1 << unused))) unused++;
  return ext(OID.keyUsage, true, der.bitString(Buffer.from([v]), unused === 8 ? 0 : unused));
};
export const CA_KEY_USAGE = [0, 5, 6];
export const LEAF_KEY_USAGE = [0, 2, 3, 4];

export const eku = (): Buffer =>
  ext(OID.extKeyUsage, false, der.seq(der.oid(OID.serverAuth), der.oid(OID.clientAuth)));
export const skiExt = (id: Buffer): Buffer => ext(OID.subjectKeyId, false, der.octets(id));
export const akiExt = (id: Buffer): Buffer => ext(OID.authorityKeyId, false, der.seq(der.ctxPrim(0, id)));

/** Critical name constraint permitting DNS names and URI hosts (RFC 5280 §4.2.1.10). */
export const nameConstraintsExt = (permitted: {
  dns: readonly string[];
  uriHosts: readonly string[];
}): Buffer =>
  ext(
    OID.nameConstraints,
    true,
    der.seq(
      der.ctx(
        0,
        ...permitted.dns.map((d) => der.seq(der.ctxPrim(2, Buffer.from(d)))),
        ...permitted.uriHosts.map((u) => der.seq(der.ctxPrim(6, Buffer.from(u)))),
      ),
    ),
  );

/** Build and sign a certificate. Returns DER. */
export function signCertificate(spec: CertSpec, signer: KeyObject): Buffer {
  const { alg, digest } = sigAlg(signer);
  const tbs = der.seq(
    der.ctx(0, der.int(2)),
    der.uintBytes(spec.serial),
    alg,
    spec.issuer,
    der.seq(der.time(spec.notBefore), der.time(spec.notAfter)),
    spec.subject,
    spec.spki,
    der.ctx(3, der.seq(...spec.extensions)),
  );
  const sig = sign(digest, tbs, signer);
  return der.seq(tbs, alg, der.bitString(sig));
}

export const certPem = (d: Buffer): string => der.derToPem(d, 'CERTIFICATE');

// ---- reading certificates ----------------------------------------------------------------------

export interface ParsedCertParts {
  subject: Buffer; // DER Name
  issuer: Buffer;
  spki: Buffer;
  extensions: Map<string, { critical: boolean; value: Buffer; raw: Buffer }>;
}

export function parseCertParts(certDer: Buffer): ParsedCertParts {
  const cert = der.readTlv(certDer, 0);
  const [tbsT] = der.children(certDer, cert);
  if (!tbsT) throw new der.DerError('certificate without TBSCertificate');
  const f = der.children(certDer, tbsT);
  let i = f[0]?.tag === 0xa0 ? 1 : 0;
  i++; // serial
  i++; // signature alg
  const issuer = f[i++]!;
  i++; // validity
  const subject = f[i++]!;
  const spki = f[i++]!;
  const extensions = new Map<string, { critical: boolean; value: Buffer; raw: Buffer }>();
  for (const t of f.slice(i)) {
    if (t.tag !== 0xa3) continue;
    const [list] = der.children(certDer, t);
    for (const e of der.children(certDer, list!)) {
      const parts = der.children(certDer, e);
      const id = der.decodeOid(der.contentOf(certDer, parts[0]!));
      const critical = parts.length === 3 && certDer[parts[1]!.body] === 0xff;
      extensions.set(id, {
        critical,
        value: der.contentOf(certDer, parts[parts.length - 1]!),
        raw: der.bytesOf(certDer, e),
      });
    }
  }
  return {
    subject: der.bytesOf(certDer, subject),
    issuer: der.bytesOf(certDer, issuer),
    spki: der.bytesOf(certDer, spki),
    extensions,
  };
}

export function subjectKeyIdOf(parts: ParsedCertParts): Buffer | undefined {
  const e = parts.extensions.get(OID.subjectKeyId);
  if (!e) return undefined;
  return der.contentOf(e.value, der.readTlv(e.value, 0));
}

/** Permitted subtrees of a name constraint: DNS names and URI hosts. */
export function permittedNames(parts: ParsedCertParts): { dns: string[]; uriHosts: string[] } | undefined {
  const e = parts.extensions.get(OID.nameConstraints);
  if (!e) return undefined;
  const v = e.value;
  const out = { dns: [] as string[], uriHosts: [] as string[] };
  for (const sub of der.children(v, der.readTlv(v, 0))) {
    if (sub.tag !== 0xa0) continue;
    for (const gs of der.children(v, sub)) {
      const [gn] = der.children(v, gs);
      if (!gn) continue;
      const s = der.contentOf(v, gn).toString('utf8');
      if (gn.tag === 0x82) out.dns.push(s);
      if (gn.tag === 0x86) out.uriHosts.push(s);
    }
  }
  return out;
}

// ---- CSRs --------------------------------------------------------------------------------------

export function createCsr(key: KeyObject, subject: { cn: string }, san: SanSet): string {
  const { alg, digest } = sigAlg(key);
  const info = der.seq(
    der.int(0),
    der.name(subject),
    spkiDer(key),
    der.ctx(0, der.seq(der.oid(OID.extensionRequest), der.set(der.seq(sanExt(san))))),
  );
  return der.derToPem(der.seq(info, alg, der.bitString(sign(digest, info, key))), 'CERTIFICATE REQUEST');
}

// The digest node:crypto needs for each CSR signature algorithm (null: Ed25519 signs the message).
const DIGEST_OF: Record<string, string | null> = {
  [OID.ecdsaSha256]: 'sha256',
  [OID.ecdsaSha384]: 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  [OID.rsaSha256]: 'sha256',
  [OID.ed25519]: null,
};

export interface ParsedCsr {
  publicKey: KeyObject;
  spki: Buffer;
  commonName: string | undefined;
  uris: string[];
  dns: string[];
}

/** Parse a PKCS#10 request and verify its self-signature. Throws MESH_ERR_CA_CSR_INVALID. */
export function parseCsr(pem: string): ParsedCsr {
  try {
    const buf = der.pemToDer(pem, 'CERTIFICATE REQUEST');
    const top = der.readTlv(buf, 0);
    const [infoT, algT, sigT] = der.children(buf, top);
    if (!infoT || !algT || !sigT || sigT.tag !== 0x03) throw new der.DerError('CSR structure');
    const [algOidT] = der.children(buf, algT);
    const algOid = algOidT ? der.decodeOid(der.contentOf(buf, algOidT)) : '';
    const digest = DIGEST_OF[algOid];
    if (digest === undefined)
      throw new MeshError('MESH_ERR_CA_CSR_INVALID', `CSR signature algorithm ${algOid} is not supported`);
    const info = der.children(buf, infoT);
    const subjectT = info[1]!;
    const spkiT = info[2]!;
    const spki = der.bytesOf(buf, spkiT);
    const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    const sig = der.contentOf(buf, sigT).subarray(1);
    if (!verify(digest, der.bytesOf(buf, infoT), publicKey, sig))
      throw new MeshError('MESH_ERR_CA_CSR_INVALID', 'CSR signature does not verify');
    let commonName: string | undefined;
    for (const rdn of der.children(buf, subjectT))
      for (const atv of der.children(buf, rdn)) {
        const [o, v] = der.children(buf, atv);
        if (o && v && der.decodeOid(der.contentOf(buf, o)) === '2.5.4.3')
          commonName = der.contentOf(buf, v).toString('utf8');
      }
    const uris: string[] = [];
    const dns: string[] = [];
    const attrs = info[3];
    if (attrs && attrs.tag === 0xa0)
      for (const a of der.children(buf, attrs)) {
        const [o, vals] = der.children(buf, a);
        if (!o || !vals || der.decodeOid(der.contentOf(buf, o)) !== OID.extensionRequest) continue;
        for (const exts of der.children(buf, vals))
          for (const e of der.children(buf, exts)) {
            const p = der.children(buf, e);
            if (der.decodeOid(der.contentOf(buf, p[0]!)) !== OID.subjectAltName) continue;
            const value = der.contentOf(buf, p[p.length - 1]!);
            for (const gn of der.children(value, der.readTlv(value, 0))) {
              const s = der.contentOf(value, gn).toString('utf8');
              if (gn.tag === 0x86) uris.push(s);
              if (gn.tag === 0x82) dns.push(s);
            }
          }
      }
    return { publicKey, spki, commonName, uris, dns };
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(
      'MESH_ERR_CA_CSR_INVALID',
      `CSR cannot be parsed: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

// ---- misc --------------------------------------------------------------------------------------

export function loadPrivateKey(pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    // never echo the input: it is a secret
    throw new MeshError('MESH_ERR_CA_CONFIG_INVALID', 'private key PEM cannot be parsed', {
      cause: err instanceof Error ? new Error(err.name) : undefined,
    });
  }
}

export function loadCert(pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new MeshError(
      'MESH_ERR_CA_CHAIN_INVALID',
      `certificate cannot be parsed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
