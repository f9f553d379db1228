// A small DER encoder and TLV reader: just what X.509 certificates and PKCS#10 requests need.
// The leaf signer builds its TBSCertificate with these (no ASN.1 object model, no allocation beyond
// the output buffers), which is what makes ≥1,000 leaves/s per core possible.

const len = (n: number): Buffer => {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
};

export const tlv = (tag: number, ...parts: Buffer[]): Buffer => {
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
};

export const seq = (...parts: Buffer[]): Buffer => tlv(0x30, ...parts);
export const set = (...parts: Buffer[]): Buffer => tlv(0x31, ...parts);
export const ctx = (n: number, ...parts: Buffer[]): Buffer => tlv(0xa0 | n, ...parts); // explicit / constructed
export const ctxPrim = (n: number, body: Buffer): Buffer => tlv(0x80 | n, body); // implicit primitive
export const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
export const nul = (): Buffer => Buffer.from([0x05, 0x00]);
export const octets = (b: Buffer): Buffer => tlv(0x04, b);
export const bitString = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.from([unused]), b);
export const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));

/** INTEGER from unsigned big-endian bytes (adds a 0 byte when the top bit is set). */
export const uintBytes = (b: Buffer): Buffer => {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
};
export const int = (n: number): Buffer => {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  return uintBytes(Buffer.from(bytes));
};

export const oid = (dotted: string): Buffer => {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) stack.unshift((v & 0x7f) | 0x80);
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
};

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
/** UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 §4.1.2.5). */
export const time = (ms: number): Buffer => {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const y = d.getUTCFullYear();
  const rest = `${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
  return y < 2050 ? tlv(0x17, Buffer.from(pad(y % 100) + rest)) : tlv(0x18, Buffer.from(pad(y, 4) + rest));
};

/** Name with one CN (and optionally O / OU) RDN. */
export const name = (attrs: { cn: string; o?: string; ou?: string }): Buffer => {
  const rdn = (o: string, v: string): Buffer => set(seq(oid(o), utf8(v)));
  const parts: Buffer[] = [];
  if (attrs.o !== undefined) parts.push(rdn('2.5.4.10', attrs.o));
  if (attrs.ou !== undefined) parts.push(rdn('2.5.4.11', attrs.ou));
  parts.push(rdn('2.5.4.3', attrs.cn));
  return seq(...parts);
};

// ---- reading -----------------------------------------------------------------------------------

export interface Tlv {
  tag: number;
  /** offset of the tag byte */
  start: number;
  /** offset of the first content byte */
  body: number;
  /** offset after the content */
  end: number;
}

export class DerError extends Error {}

export function readTlv(buf: Buffer, at: number, limit = buf.length): Tlv {
  if (at + 2 > limit) throw new DerError('truncated DER');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte DER tags are not supported');
  let l = buf[at + 1]!;
  let body = at + 2;
  if (l & 0x80) {
    const n = l & 0x7f;
    if (n === 0 || n > 4) throw new DerError('bad DER length');
    if (body + n > limit) throw new DerError('truncated DER');
    l = 0;
    for (let i = 0; i < n; i++) l = l * 256 + buf[body + i]!;
    body += n;
  }
  const end = body + l;
  if (end > limit) throw new DerError('DER length beyond its container');
  return { tag, start: at, body, end };
}

/** The children of a constructed TLV. */
export function children(buf: Buffer, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = t.body; at < t.end;) {
    const c = readTlv(buf, at, t.end);
    out.push(c);
    at = c.end;
  }
  return out;
}

export const bytesOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.start, t.end);
export const contentOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.body, t.end);

export function decodeOid(b: Buffer): string {
  if (b.length === 0) throw new DerError('empty OID');
  const out = [Math.floor(b[0]! / 40), b[0]! % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      out.push(v);
      v = 0;
    }
  }
  return out.join('.');
}

export function pemToDer(pem: string, label?: string): Buffer {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (!m || (label !== undefined && m[1] !== label)) throw new DerError(`not a PEM ${label ?? 'block'}`);
  return Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
}

export function derToPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

/** Every PEM block of the given label in a string (a chain or a bundle). */
export function splitPems(text: string, label = 'CERTIFICATE'): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return (text.match(re) ?? []).map((p) => p + '\n');
}
