// The frame codec for our own server-to-server messages (replication, federation RPC).
//
// A frame is one msgpack array: [version, type, id, body]. `version` lets a newer peer refuse an
// older frame format cleanly; `type` names the message; `id` pairs requests with responses and
// streams (0 when unused); `body` is the message's own value. Decoding never throws: anything that
// is too large, does not decode, or has the wrong shape comes back as a reason, so a bad peer is
// closed and counted, never the daemon.

import { Packr } from 'msgpackr';
import { MeshError, type Result } from './errors.js';

export const FRAME_VERSION = 1;
/** Default maximum frame size: large enough for a snapshot chunk, small enough to bound memory. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

export interface Frame<T = unknown> {
  type: string;
  id: number;
  body: T;
}

export interface FrameDecodeFailure {
  code: 'MESH_ERR_FRAME_TOO_LARGE' | 'MESH_ERR_FRAME_DECODE' | 'MESH_ERR_FRAME_VERSION';
  reason: string;
}

// Plain maps as objects, no record extension (peers must not depend on shared structure state),
// 64-bit integers as numbers (indexes and timestamps stay far below 2^53).
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: false });

export function encodeFrame(frame: Frame, maxBytes = DEFAULT_MAX_FRAME_BYTES): Buffer {
  const bytes = packr.pack([FRAME_VERSION, frame.type, frame.id, frame.body]);
  if (bytes.length > maxBytes)
    throw new MeshError(
      'MESH_ERR_FRAME_TOO_LARGE',
      `frame "${frame.type}" is ${bytes.length} bytes; the limit is ${maxBytes}`,
    );
  return bytes;
}

export function decodeFrame(
  bytes: Uint8Array,
  maxBytes = DEFAULT_MAX_FRAME_BYTES,
): { ok: true; frame: Frame } | ({ ok: false } & FrameDecodeFailure) {
  if (bytes.length > maxBytes)
    return {
      ok: false,
      code: 'MESH_ERR_FRAME_TOO_LARGE',
      reason: `frame of ${bytes.length} bytes exceeds ${maxBytes}`,
    };
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    return { ok: false, code: 'MESH_ERR_FRAME_DECODE', reason: `not msgpack: ${(err as Error).message}` };
  }
  if (!Array.isArray(value) || value.length !== 4)
    return { ok: false, code: 'MESH_ERR_FRAME_DECODE', reason: 'frame is not a 4-element array' };
  const [version, type, id, body] = value as unknown[];
  if (version !== FRAME_VERSION)
    return {
      ok: false,
      code: 'MESH_ERR_FRAME_VERSION',
      reason: `frame version ${String(version)} is not ${FRAME_VERSION}`,
    };
  if (typeof type !== 'string' || type.length === 0 || type.length > 128)
    return { ok: false, code: 'MESH_ERR_FRAME_DECODE', reason: 'frame type must be a non-empty string' };
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0)
    return { ok: false, code: 'MESH_ERR_FRAME_DECODE', reason: 'frame id must be a non-negative integer' };
  return { ok: true, frame: { type, id, body } };
}

/** msgpack for values that are not frames (snapshots on disk, worker messages). */
export function packValue(value: unknown): Buffer {
  return packr.pack(value);
}

export function unpackValue(bytes: Uint8Array): Result<unknown> {
  try {
    return { ok: true, value: packr.unpack(bytes) };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}
