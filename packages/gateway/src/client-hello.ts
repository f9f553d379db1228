// ClientHello peek: reads SNI and ALPN from the first TLS handshake message without terminating
// TLS. It owns only parsing; it never allocates per byte, never throws on bad input (every outcome
// is a value the gateway counts) and never looks past the ClientHello.
//
// The ClientHello may arrive split anywhere: across TCP segments (the caller hands us everything
// received so far) and across several TLS records (we reassemble the handshake fragments).

export type HelloResult =
  | { status: 'more' }
  | { status: 'ok'; sni: string | undefined; alpn: string[] }
  | { status: 'error'; reason: HelloError };

/** Bounded set: used as a metric label. */
export type HelloError = 'not_tls' | 'malformed' | 'too_large';

const MORE: HelloResult = { status: 'more' };
const err = (reason: HelloError): HelloResult => ({ status: 'error', reason });

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const MAX_RECORD = 16384 + 2048; // TLSCiphertext upper bound; a plaintext ClientHello record is <= 2^14
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;

/**
 * Parse what has been received so far. `data` is the bytes in arrival order (one buffer or
 * several); `maxBytes` bounds the ClientHello handshake message.
 */
export function parseClientHello(data: Buffer | readonly Buffer[], maxBytes = 16384): HelloResult {
  const buf = Buffer.isBuffer(data) ? data : data.length === 1 ? data[0]! : Buffer.concat(data);
  if (buf.length === 0) return MORE;
  if (buf[0] !== RECORD_HANDSHAKE) return err('not_tls');

  // Walk records, collecting handshake fragments until the ClientHello is complete.
  let off = 0;
  let body: Buffer | undefined; // the handshake message, once fully reassembled
  let single: Buffer | undefined; // fast path: the first record's fragment
  let parts: Buffer[] | undefined;
  let have = 0;
  let need = -1; // handshake length incl. 4-byte header, once known
  while (body === undefined) {
    if (buf.length - off < 5)
      return buf.length - off > 0 && !recordPrefixOk(buf, off) ? err('not_tls') : MORE;
    if (buf[off] !== RECORD_HANDSHAKE) return off === 0 ? err('not_tls') : err('malformed');
    if (buf[off + 1] !== 3 || buf[off + 2]! > 4) return off === 0 ? err('not_tls') : err('malformed');
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > MAX_RECORD) return err('malformed');
    const avail = Math.min(len, buf.length - off - 5);
    const frag = buf.subarray(off + 5, off + 5 + avail);
    if (single === undefined && parts === undefined) single = frag;
    else {
      parts ??= [single!];
      parts.push(frag);
    }
    have += avail;
    if (need < 0 && have >= 4) {
      const head = parts ? Buffer.concat(parts) : single!;
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return err('malformed');
      const hlen = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
      if (hlen > maxBytes) return err('too_large');
      if (hlen < 38) return err('malformed');
      need = hlen + 4;
    }
    if (need >= 0 && have >= need) {
      const all = parts ? Buffer.concat(parts) : single!;
      body = all.subarray(4, need);
      break;
    }
    if (avail < len) return MORE; // rest of this record still in flight
    off += 5 + len;
    if (need < 0 && have > maxBytes + 4) return err('too_large');
  }
  return parseHelloBody(body);
}

function recordPrefixOk(buf: Buffer, off: number): boolean {
  if (buf[off] !== RECORD_HANDSHAKE) return false;
  if (buf.length - off >= 2 && buf[off + 1] !== 3) return false;
  return true;
}

function parseHelloBody(b: Buffer): HelloResult {
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > b.length) return err('malformed');
  const sid = b[p]!;
  if (sid > 32) return err('malformed');
  p += 1 + sid;
  if (p + 2 > b.length) return err('malformed');
  const cs = b.readUInt16BE(p);
  if (cs < 2 || cs % 2 !== 0) return err('malformed');
  p += 2 + cs;
  if (p + 1 > b.length) return err('malformed');
  const comp = b[p]!;
  if (comp < 1) return err('malformed');
  p += 1 + comp;
  if (p > b.length) return err('malformed');
  let sni: string | undefined;
  const alpn: string[] = [];
  if (p === b.length) return { status: 'ok', sni, alpn }; // no extensions (old clients)
  if (p + 2 > b.length) return err('malformed');
  const extLen = b.readUInt16BE(p);
  p += 2;
  if (p + extLen !== b.length) return err('malformed');
  let seenSni = false;
  let seenAlpn = false;
  while (p < b.length) {
    if (p + 4 > b.length) return err('malformed');
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    const end = p + len;
    if (end > b.length) return err('malformed');
    if (type === EXT_SERVER_NAME) {
      if (seenSni) return err('malformed');
      seenSni = true;
      const r = parseServerName(b, p, end);
      if (r === null) return err('malformed');
      sni = r;
    } else if (type === EXT_ALPN) {
      if (seenAlpn) return err('malformed');
      seenAlpn = true;
      if (!parseAlpn(b, p, end, alpn)) return err('malformed');
    }
    p = end; // everything else, GREASE included, is skipped by length
  }
  return { status: 'ok', sni, alpn };
}

/** host_name from a server_name extension; undefined = no host_name entry; null = malformed. */
function parseServerName(b: Buffer, p: number, end: number): string | undefined | null {
  if (p + 2 > end) return null;
  const listLen = b.readUInt16BE(p);
  p += 2;
  if (p + listLen !== end || listLen === 0) return null;
  let host: string | undefined;
  while (p < end) {
    if (p + 3 > end) return null;
    const nameType = b[p]!;
    const len = b.readUInt16BE(p + 1);
    p += 3;
    if (p + len > end) return null;
    if (nameType === 0) {
      if (host !== undefined || len === 0 || len > 255) return null;
      for (let i = p; i < p + len; i++) if (!hostByte(b[i]!)) return null;
      host = b.toString('latin1', p, p + len).toLowerCase();
    }
    p += len;
  }
  return host;
}

// Letters, digits, '-', '.', '_' and '*': anything else in a host name is malformed, and keeps
// control bytes and non-ASCII out of logs and route lookups.
function hostByte(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5f ||
    c === 0x2a
  );
}

function parseAlpn(b: Buffer, p: number, end: number, out: string[]): boolean {
  if (p + 2 > end) return false;
  const listLen = b.readUInt16BE(p);
  p += 2;
  if (p + listLen !== end || listLen < 2) return false;
  while (p < end) {
    const len = b[p]!;
    p += 1;
    if (len === 0 || p + len > end) return false;
    out.push(b.toString('latin1', p, p + len));
    p += len;
  }
  return true;
}
