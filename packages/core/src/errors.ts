// MeshError: the one error base. It carries a stable code from error-codes.ts, a message written for
// the operator (what happened and what to do), optional typed details, and a chained cause. It
// crosses the wire as { code, message, details } and is rebuilt on the other side with fromWire().

import { errorCodes, isErrorCode, type ErrorCode } from './error-codes.js';

export type ErrorDetails = Readonly<Record<string, unknown>>;

export interface MeshErrorWire {
  code: ErrorCode;
  message: string;
  details?: ErrorDetails;
}

export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails | undefined;

  constructor(code: ErrorCode, message?: string, options?: { details?: ErrorDetails; cause?: unknown }) {
    super(
      message ?? errorCodes[code].message,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'MeshError';
    this.code = code;
    this.details = options?.details;
  }

  /** HTTP status for this error's code. */
  get status(): number {
    return errorCodes[this.code].status;
  }

  toWire(): MeshErrorWire {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  /** Rebuild an error received from a peer; anything malformed becomes MESH_ERR_INTERNAL. */
  static fromWire(value: unknown): MeshError {
    if (typeof value === 'object' && value !== null) {
      const v = value as Record<string, unknown>;
      const message = typeof v['message'] === 'string' ? v['message'] : undefined;
      const details =
        typeof v['details'] === 'object' && v['details'] !== null
          ? (v['details'] as ErrorDetails)
          : undefined;
      if (isErrorCode(v['code'])) return new MeshError(v['code'], message, details ? { details } : undefined);
      return new MeshError('MESH_ERR_INTERNAL', message ?? 'peer sent a malformed error');
    }
    return new MeshError('MESH_ERR_INTERNAL', 'peer sent a malformed error');
  }
}

export function isMeshError(err: unknown, code?: ErrorCode): err is MeshError {
  return err instanceof MeshError && (code === undefined || err.code === code);
}

/** Wrap anything thrown into a MeshError, keeping MeshErrors as they are. */
export function toMeshError(err: unknown, code: ErrorCode = 'MESH_ERR_INTERNAL'): MeshError {
  if (err instanceof MeshError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MeshError(code, message, { cause: err });
}

/** The message of anything thrown, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A value or a reason: used where bad input is expected and must not throw (parsers, decoders). */
export type Result<T> = { ok: true; value: T } | { ok: false; reason: string };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T = never>(reason: string): Result<T> => ({ ok: false, reason });
