// memberlist's wire framing (net.go): message types, the structs, compound/CRC/compress wrappers
// and the incremental stream parser. Owns bytes only: no sockets, no state, no clocks.

import { crc32 } from 'node:zlib';
import { lzwCompress, lzwDecompress } from './lzw.js';
import {
  asArr,
  asBool,
  asBytes,
  asMap,
  asStr,
  asUint,
  decodeAt,
  encode,
  encodeTyped,
  NeedMore,
  type Decoded,
  type Encodable,
} from './msgpack.js';
import type { Keyring } from './keyring.js';

export const MsgType = {
  ping: 0,
  indirectPing: 1,
  ack: 2,
  suspect: 3,
  alive: 4,
  dead: 5,
  pushPull: 6,
  compound: 7,
  user: 8,
  compress: 9,
  encrypt: 10,
  nack: 11,
  hasCrc: 12,
  err: 13,
} as const;

export const NodeStateCode = { alive: 0, suspect: 1, dead: 2, left: 3 } as const;

export const MAX_UDP_PACKET = 65536;
export const UDP_BUFFER_SIZE = 1400;
export const MAX_STREAM_BYTES = 20 * 1024 * 1024;
export const META_MAX = 512;

export interface Ping {
  seqNo: number;
  node: string;
  sourceAddr?: Buffer | undefined;
  sourcePort?: number | undefined;
  sourceNode?: string | undefined;
}
export interface IndirectPing extends Ping {
  target: Buffer;
  port: number;
  nack: boolean;
}
export interface Ack {
  seqNo: number;
  payload?: Buffer | undefined;
}
export interface Suspect {
  incarnation: number;
  node: string;
  from: string;
}
export type Dead = Suspect;
export interface Alive {
  incarnation: number;
  node: string;
  addr: Buffer;
  port: number;
  meta: Buffer;
  vsn: number[];
}
export interface PushNodeState {
  name: string;
  addr: Buffer;
  port: number;
  meta: Buffer;
  incarnation: number;
  state: number;
  vsn: number[];
}
export interface PushPull {
  join: boolean;
  nodes: PushNodeState[];
  userState: Buffer;
}

const vsnBytes = (v: number[]): Buffer => Buffer.from(v.length === 6 ? v : [1, 5, 2, 2, 5, 5]);

export function encodePing(p: Ping, type: number = MsgType.ping): Buffer {
  return encodeTyped(type, {
    Node: p.node,
    SeqNo: p.seqNo,
    SourceAddr: p.sourceAddr,
    SourceNode: p.sourceNode || undefined,
    SourcePort: p.sourcePort || undefined,
  });
}
export function encodeIndirect(p: IndirectPing): Buffer {
  return encodeTyped(MsgType.indirectPing, {
    Nack: p.nack,
    Node: p.node,
    Port: p.port,
    SeqNo: p.seqNo,
    SourceAddr: p.sourceAddr,
    SourceNode: p.sourceNode || undefined,
    SourcePort: p.sourcePort || undefined,
    Target: p.target,
  });
}
export const encodeAck = (a: Ack): Buffer =>
  encodeTyped(MsgType.ack, { Payload: a.payload ?? null, SeqNo: a.seqNo });
export const encodeNack = (seqNo: number): Buffer => encodeTyped(MsgType.nack, { SeqNo: seqNo });
export const encodeSuspect = (s: Suspect): Buffer =>
  encodeTyped(MsgType.suspect, { From: s.from, Incarnation: s.incarnation, Node: s.node });
export const encodeDead = (s: Dead): Buffer =>
  encodeTyped(MsgType.dead, { From: s.from, Incarnation: s.incarnation, Node: s.node });
export const encodeAlive = (a: Alive): Buffer =>
  encodeTyped(MsgType.alive, {
    Addr: a.addr,
    Incarnation: a.incarnation,
    Meta: a.meta,
    Node: a.node,
    Port: a.port,
    Vsn: vsnBytes(a.vsn),
  });
export const encodeErr = (msg: string): Buffer => encodeTyped(MsgType.err, { Error: msg });

export function encodePushPull(p: PushPull): Buffer {
  const parts: Buffer[] = [
    encodeTyped(MsgType.pushPull, { Join: p.join, Nodes: p.nodes.length, UserStateLen: p.userState.length }),
  ];
  for (const n of p.nodes) {
    const s: Encodable = {
      Addr: n.addr,
      Incarnation: n.incarnation,
      Meta: n.meta,
      Name: n.name,
      Port: n.port,
      State: n.state,
      Vsn: vsnBytes(n.vsn),
    };
    parts.push(encode(s));
  }
  parts.push(p.userState);
  return Buffer.concat(parts);
}

export function encodeUserStream(payload: Buffer): Buffer {
  return Buffer.concat([encodeTyped(MsgType.user, { UserMsgLen: payload.length }), payload]);
}

function vsnOf(v: Decoded | undefined): number[] {
  const b = asBytes(v);
  return b ? [...b] : [];
}

export function decodePing(d: Decoded): Ping {
  const m = asMap(d);
  return {
    seqNo: asUint(m['SeqNo']),
    node: asStr(m['Node']),
    sourceAddr: asBytes(m['SourceAddr']),
    sourcePort: asUint(m['SourcePort']),
    sourceNode: asStr(m['SourceNode']),
  };
}
export function decodeIndirect(d: Decoded): IndirectPing {
  const m = asMap(d);
  return {
    ...decodePing(d),
    target: asBytes(m['Target']) ?? Buffer.alloc(0),
    port: asUint(m['Port']),
    nack: asBool(m['Nack']),
  };
}
export function decodeAck(d: Decoded): Ack {
  const m = asMap(d);
  return { seqNo: asUint(m['SeqNo']), payload: asBytes(m['Payload']) };
}
export function decodeSuspect(d: Decoded): Suspect {
  const m = asMap(d);
  return { incarnation: asUint(m['Incarnation']), node: asStr(m['Node']), from: asStr(m['From']) };
}
export function decodeAlive(d: Decoded): Alive {
  const m = asMap(d);
  return {
    incarnation: asUint(m['Incarnation']),
    node: asStr(m['Node']),
    addr: asBytes(m['Addr']) ?? Buffer.alloc(0),
    port: asUint(m['Port']),
    meta: asBytes(m['Meta']) ?? Buffer.alloc(0),
    vsn: vsnOf(m['Vsn']),
  };
}

/** Split a message into its type byte and decoded body. Throws on garbage. */
export function splitMessage(buf: Buffer): [number, Buffer] {
  if (buf.length < 1) throw new Error('empty message');
  return [buf[0]!, buf.subarray(1)];
}

export function decodeBody(body: Buffer): Decoded {
  try {
    return decodeAt(body, 0)[0];
  } catch (err) {
    if (err instanceof NeedMore) throw new Error('truncated message', { cause: err });
    throw err;
  }
}

export function makeCompound(msgs: Buffer[]): Buffer {
  const head = Buffer.alloc(2 + msgs.length * 2);
  head[0] = MsgType.compound;
  head[1] = msgs.length;
  msgs.forEach((m, i) => head.writeUInt16BE(m.length, 2 + i * 2));
  return Buffer.concat([head, ...msgs]);
}

/** Parts of a compound body (after the type byte); a truncated tail is dropped (counted by caller). */
export function splitCompound(body: Buffer): { parts: Buffer[]; truncated: number } {
  if (body.length < 1) throw new Error('missing compound length byte');
  const n = body[0]!;
  if (body.length < 1 + n * 2) throw new Error('truncated compound header');
  const parts: Buffer[] = [];
  let off = 1 + n * 2;
  for (let i = 0; i < n; i++) {
    const len = body.readUInt16BE(1 + i * 2);
    if (off + len > body.length) return { parts, truncated: n - i };
    parts.push(body.subarray(off, off + len));
    off += len;
  }
  return { parts, truncated: 0 };
}

export function compressMsg(msg: Buffer): Buffer {
  return encodeTyped(MsgType.compress, { Algo: 0, Buf: lzwCompress(msg) });
}

export function decompressBody(body: Buffer): Buffer {
  const m = asMap(decodeBody(body));
  if (asUint(m['Algo']) !== 0) throw new Error('unsupported compression algorithm');
  return lzwDecompress(asBytes(m['Buf']) ?? Buffer.alloc(0), MAX_STREAM_BYTES);
}

export function addCrc(msg: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = MsgType.hasCrc;
  head.writeUInt32BE(crc32(msg) >>> 0, 1);
  return Buffer.concat([head, msg]);
}

export function checkCrc(buf: Buffer): Buffer {
  if (buf.length < 5) throw new Error('truncated crc header');
  const want = buf.readUInt32BE(1);
  const rest = buf.subarray(5);
  if (crc32(rest) >>> 0 !== want) throw new Error('crc mismatch');
  return rest;
}

// ---- streams ---------------------------------------------------------------------------------

export type StreamMsg =
  | { type: 'pushPull'; pushPull: PushPull }
  | { type: 'ping'; ping: Ping }
  | { type: 'ack'; ack: Ack }
  | { type: 'user'; payload: Buffer }
  | { type: 'err'; error: string };

export interface StreamCodecOptions {
  keyring?: Keyring | undefined;
  verifyIncoming: boolean;
}

/**
 * Parse one complete stream message from the start of `buf`. Throws NeedMore when more bytes are
 * needed (the agent's dialer does not half-close, so we cannot read to EOF), Error on bad input.
 */
export function parseStream(buf: Buffer, opts: StreamCodecOptions): StreamMsg {
  if (buf.length < 1) throw new NeedMore();
  const b = buf;
  if (b[0] === MsgType.encrypt) {
    if (!opts.keyring || opts.keyring.size === 0) throw new Error('encrypted stream but no keyring');
    if (b.length < 5) throw new NeedMore();
    const len = b.readUInt32BE(1);
    if (len > MAX_STREAM_BYTES) throw new Error('encrypted stream too large');
    if (b.length < 5 + len) throw new NeedMore();
    const plain = opts.keyring.decrypt(b.subarray(5, 5 + len), b.subarray(0, 5));
    if (!plain) throw new Error('no installed keys could decrypt the stream');
    return parseInner(plain, true);
  }
  if (opts.keyring && opts.keyring.size > 0 && opts.verifyIncoming) {
    throw new Error('plaintext stream but encryption is required');
  }
  return parseInner(b, false);
}

function parseInner(buf: Buffer, complete: boolean): StreamMsg {
  try {
    let b = buf;
    if (b[0] === MsgType.compress) {
      const [d, end] = decodeAt(b, 1);
      void end;
      const m = asMap(d);
      if (asUint(m['Algo']) !== 0) throw new Error('unsupported compression algorithm');
      b = lzwDecompress(asBytes(m['Buf']) ?? Buffer.alloc(0), MAX_STREAM_BYTES);
      complete = true;
    }
    return parsePlain(b);
  } catch (err) {
    if (err instanceof NeedMore && complete) throw new Error('truncated stream message', { cause: err });
    throw err;
  }
}

function parsePlain(b: Buffer): StreamMsg {
  if (b.length < 1) throw new NeedMore();
  const t = b[0]!;
  switch (t) {
    case MsgType.pushPull: {
      let [d, p] = decodeAt(b, 1);
      const h = asMap(d);
      const n = asUint(h['Nodes']);
      const userLen = asUint(h['UserStateLen']);
      if (n > 100_000 || userLen > MAX_STREAM_BYTES) throw new Error('push-pull too large');
      const nodes: PushNodeState[] = [];
      for (let i = 0; i < n; i++) {
        [d, p] = decodeAt(b, p);
        const m = asMap(d);
        nodes.push({
          name: asStr(m['Name']),
          addr: asBytes(m['Addr']) ?? Buffer.alloc(0),
          port: asUint(m['Port']),
          meta: asBytes(m['Meta']) ?? Buffer.alloc(0),
          incarnation: asUint(m['Incarnation']),
          state: asUint(m['State']),
          vsn: vsnOf(m['Vsn']),
        });
      }
      if (b.length < p + userLen) throw new NeedMore();
      return {
        type: 'pushPull',
        pushPull: { join: asBool(h['Join']), nodes, userState: Buffer.from(b.subarray(p, p + userLen)) },
      };
    }
    case MsgType.ping:
      return { type: 'ping', ping: decodePing(decodeAt(b, 1)[0]) };
    case MsgType.ack:
      return { type: 'ack', ack: decodeAck(decodeAt(b, 1)[0]) };
    case MsgType.user: {
      const [d, p] = decodeAt(b, 1);
      const len = asUint(asMap(d)['UserMsgLen']);
      if (len > MAX_STREAM_BYTES) throw new Error('user stream too large');
      if (b.length < p + len) throw new NeedMore();
      return { type: 'user', payload: Buffer.from(b.subarray(p, p + len)) };
    }
    case MsgType.err:
      return { type: 'err', error: asStr(asMap(decodeAt(b, 1)[0])['Error']) };
    default:
      throw new Error(`unknown stream message type ${t}`);
  }
}

/** Wrap a complete stream message for sending: always compress if on, then encrypt. */
export function wrapStream(msg: Buffer, compress: boolean, keyring: Keyring | undefined): Buffer {
  let b = compress ? compressMsg(msg) : msg;
  if (keyring && keyring.size > 0) {
    const head = Buffer.alloc(5);
    head[0] = MsgType.encrypt;
    const sealedLen = b.length + 29;
    head.writeUInt32BE(sealedLen, 1);
    const sealed = keyring.encrypt(b, head);
    b = Buffer.concat([head, sealed]);
  }
  return b;
}

export { asArr };
