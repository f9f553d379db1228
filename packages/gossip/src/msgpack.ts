// MessagePack in hashicorp/go-msgpack 0.5.5's flavour (zero MsgpackHandle, "old spec"), both ways.
// Encoding: strings and byte slices both use the raw family fixstr/str16/str32 (never str8, never
// bin), integers take the smallest form by value, plain objects are written with byte-wise sorted
// keys (go-msgpack sorts struct fields). We write our own ~100-line encoder instead of msgpackr
// with four extension classes (GoRaw, GoU64, float64, sorted keys): same bytes, fewer moving parts.
// Decoding keeps every str/bin value as a Buffer (Go writes []byte as str, so UTF-8 decoding would
// destroy Meta, IPs, keys and payloads) and throws NeedMore on short input for incremental TCP.

/** A float64 that must be written as `cb` even when integral (Go float64 fields). */
export class F64 {
  constructor(readonly value: number) {}
}

/** Thrown when the input ends before a complete value: read more bytes and try again. */
export class NeedMore extends Error {
  constructor() {
    super('need more bytes');
  }
}

export type Encodable =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | F64
  | readonly Encodable[]
  | Map<string, Encodable>
  | { readonly [k: string]: Encodable };

class Writer {
  buf = Buffer.allocUnsafe(256);
  len = 0;
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.len);
    this.len += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.len);
    this.len += 4;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
}

function writeRaw(w: Writer, b: Uint8Array): void {
  if (b.length < 32) w.u8(0xa0 | b.length);
  else if (b.length < 0x10000) {
    w.u8(0xda);
    w.u16(b.length);
  } else {
    w.u8(0xdb);
    w.u32(b.length);
  }
  w.bytes(b);
}

function writeInt(w: Writer, v: number | bigint): void {
  if (typeof v === 'bigint') {
    w.ensure(9);
    if (v >= 0n) {
      if (v <= 0xffffffffn) return writeInt(w, Number(v));
      w.u8(0xcf);
      w.buf.writeBigUInt64BE(v, w.len);
    } else {
      if (v >= -0x80000000n) return writeInt(w, Number(v));
      w.u8(0xd3);
      w.buf.writeBigInt64BE(v, w.len);
    }
    w.len += 8;
    return;
  }
  if (v >= 0) {
    if (v < 128) w.u8(v);
    else if (v < 0x100) {
      w.u8(0xcc);
      w.u8(v);
    } else if (v < 0x10000) {
      w.u8(0xcd);
      w.u16(v);
    } else if (v < 0x100000000) {
      w.u8(0xce);
      w.u32(v);
    } else writeInt(w, BigInt(v));
  } else if (v >= -32) w.u8(v & 0xff);
  else if (v >= -128) {
    w.u8(0xd0);
    w.u8(v & 0xff);
  } else if (v >= -32768) {
    w.u8(0xd1);
    w.ensure(2);
    w.buf.writeInt16BE(v, w.len);
    w.len += 2;
  } else if (v >= -0x80000000) {
    w.u8(0xd2);
    w.ensure(4);
    w.buf.writeInt32BE(v, w.len);
    w.len += 4;
  } else writeInt(w, BigInt(v));
}

function writeValue(w: Writer, v: Encodable): void {
  if (v === null || v === undefined) return w.u8(0xc0);
  if (typeof v === 'boolean') return w.u8(v ? 0xc3 : 0xc2);
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return writeInt(w, v);
    w.u8(0xcb);
    w.ensure(8);
    w.buf.writeDoubleBE(v, w.len);
    w.len += 8;
    return;
  }
  if (typeof v === 'bigint') return writeInt(w, v);
  if (typeof v === 'string') return writeRaw(w, Buffer.from(v, 'utf8'));
  if (v instanceof Uint8Array) return writeRaw(w, v);
  if (v instanceof F64) {
    w.u8(0xcb);
    w.ensure(8);
    w.buf.writeDoubleBE(v.value, w.len);
    w.len += 8;
    return;
  }
  if (Array.isArray(v)) {
    const a = v as readonly Encodable[];
    if (a.length < 16) w.u8(0x90 | a.length);
    else if (a.length < 0x10000) {
      w.u8(0xdc);
      w.u16(a.length);
    } else {
      w.u8(0xdd);
      w.u32(a.length);
    }
    for (const x of a) writeValue(w, x);
    return;
  }
  const entries: [string, Encodable][] =
    v instanceof Map ? [...v.entries()] : Object.entries(v as Record<string, Encodable>);
  const kept = entries.filter(([, x]) => x !== undefined);
  kept.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  if (kept.length < 16) w.u8(0x80 | kept.length);
  else if (kept.length < 0x10000) {
    w.u8(0xde);
    w.u16(kept.length);
  } else {
    w.u8(0xdf);
    w.u32(kept.length);
  }
  for (const [k, x] of kept) {
    writeRaw(w, Buffer.from(k, 'utf8'));
    writeValue(w, x);
  }
}

/** Encode one value the way go-msgpack does. `undefined` object fields are left out (omitempty). */
export function encode(v: Encodable): Buffer {
  const w = new Writer();
  writeValue(w, v);
  return Buffer.from(w.buf.subarray(0, w.len));
}

/** A type byte followed by one msgpack value: the framing of every memberlist/serf message. */
export function encodeTyped(type: number, v: Encodable): Buffer {
  const w = new Writer();
  w.u8(type);
  writeValue(w, v);
  return Buffer.from(w.buf.subarray(0, w.len));
}

export type Decoded = null | boolean | number | bigint | Buffer | Decoded[] | DecodedMap;
export interface DecodedMap {
  [k: string]: Decoded;
}

const MAX_CONTAINER = 1 << 20;

/** Decode one value at `offset`; returns it and the offset after it. Throws NeedMore or Error. */
export function decodeAt(buf: Buffer, offset: number): [Decoded, number] {
  let p = offset;
  const need = (n: number): void => {
    if (p + n > buf.length) throw new NeedMore();
  };
  const read = (): Decoded => {
    need(1);
    const b = buf[p++]!;
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 256;
    if ((b & 0xf0) === 0x80) return map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return arr(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return raw(b & 0x1f);
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        need(1);
        return raw(buf[p++]!);
      case 0xc5:
      case 0xda:
        need(2);
        p += 2;
        return raw(buf.readUInt16BE(p - 2));
      case 0xc6:
      case 0xdb:
        need(4);
        p += 4;
        return raw(buf.readUInt32BE(p - 4));
      case 0xd9:
        need(1);
        return raw(buf[p++]!);
      case 0xca:
        need(4);
        p += 4;
        return buf.readFloatBE(p - 4);
      case 0xcb:
        need(8);
        p += 8;
        return buf.readDoubleBE(p - 8);
      case 0xcc:
        need(1);
        return buf[p++]!;
      case 0xcd:
        need(2);
        p += 2;
        return buf.readUInt16BE(p - 2);
      case 0xce:
        need(4);
        p += 4;
        return buf.readUInt32BE(p - 4);
      case 0xcf: {
        need(8);
        p += 8;
        const v = buf.readBigUInt64BE(p - 8);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 0xd0:
        need(1);
        return buf.readInt8(p++);
      case 0xd1:
        need(2);
        p += 2;
        return buf.readInt16BE(p - 2);
      case 0xd2:
        need(4);
        p += 4;
        return buf.readInt32BE(p - 4);
      case 0xd3: {
        need(8);
        p += 8;
        const v = buf.readBigInt64BE(p - 8);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      case 0xdc:
        need(2);
        p += 2;
        return arr(buf.readUInt16BE(p - 2));
      case 0xdd:
        need(4);
        p += 4;
        return arr(buf.readUInt32BE(p - 4));
      case 0xde:
        need(2);
        p += 2;
        return map(buf.readUInt16BE(p - 2));
      case 0xdf:
        need(4);
        p += 4;
        return map(buf.readUInt32BE(p - 4));
      default:
        throw new Error(`unsupported msgpack descriptor 0x${b.toString(16)}`);
    }
  };
  const raw = (n: number): Buffer => {
    need(n);
    p += n;
    return buf.subarray(p - n, p);
  };
  const arr = (n: number): Decoded[] => {
    if (n > MAX_CONTAINER) throw new Error('msgpack array too large');
    const out: Decoded[] = [];
    for (let i = 0; i < n; i++) out.push(read());
    return out;
  };
  const map = (n: number): DecodedMap => {
    if (n > MAX_CONTAINER) throw new Error('msgpack map too large');
    const out: DecodedMap = Object.create(null) as DecodedMap;
    for (let i = 0; i < n; i++) {
      const k = read();
      const v = read();
      const key = Buffer.isBuffer(k) ? k.toString('utf8') : String(k);
      out[key] = v;
    }
    return out;
  };
  const v = read();
  return [v, p];
}

export function decode(buf: Buffer): Decoded {
  return decodeAt(buf, 0)[0];
}

// Typed accessors for decoded structs: missing keys give Go's zero values, wrong types throw.
export function asMap(v: Decoded | undefined, what = 'struct'): DecodedMap {
  if (v === null || v === undefined) return Object.create(null) as DecodedMap;
  if (typeof v !== 'object' || Buffer.isBuffer(v) || Array.isArray(v))
    throw new Error(`${what}: expected a map`);
  return v;
}
export function asStr(v: Decoded | undefined): string {
  if (v === null || v === undefined) return '';
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  throw new Error('expected a string');
}
export function asBytes(v: Decoded | undefined): Buffer | undefined {
  if (v === null || v === undefined) return undefined;
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (Array.isArray(v)) return Buffer.from(v.map((x) => Number(x)));
  throw new Error('expected bytes');
}
export function asUint(v: Decoded | undefined): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  throw new Error('expected an integer');
}
export function asBig(v: Decoded | undefined): bigint {
  if (v === null || v === undefined) return 0n;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  throw new Error('expected an integer');
}
export function asBool(v: Decoded | undefined): boolean {
  if (v === null || v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  throw new Error('expected a bool');
}
export function asArr(v: Decoded | undefined): Decoded[] {
  if (v === null || v === undefined) return [];
  if (Array.isArray(v)) return v;
  throw new Error('expected an array');
}
