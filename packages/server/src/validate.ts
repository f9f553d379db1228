// Field readers for HTTP bodies. Every failure is a MeshError (400) whose message names the field
// path and says what was expected and what was found, so an operator can fix the request.

import { MeshError, describeType, nameProblem, parseDuration, type NameKind } from '@meshfed/core';

export type Json = Record<string, unknown>;

export function bad(field: string, why: string): MeshError {
  return new MeshError('MESH_ERR_API_BAD_REQUEST', `${field}: ${why}`, { details: { field } });
}

export function obj(v: unknown, field: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw bad(field, `expected an object, got ${describeType(v)}`);
  return v as Json;
}

export function optObj(v: unknown, field: string): Json | undefined {
  return v === undefined || v === null ? undefined : obj(v, field);
}

export function str(v: unknown, field: string): string {
  if (typeof v !== 'string') throw bad(field, `expected a string, got ${describeType(v)}`);
  return v;
}

export function optStr(v: unknown, field: string): string | undefined {
  return v === undefined || v === null ? undefined : str(v, field);
}

export function optNum(v: unknown, field: string, min = -Infinity, max = Infinity): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw bad(field, `expected a number, got ${describeType(v)}`);
  if (v < min || v > max) throw bad(field, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

export function optPort(v: unknown, field: string): number | undefined {
  const n = optNum(v, field, 0, 65535);
  if (n !== undefined && !Number.isInteger(n)) throw bad(field, `expected an integer port, got ${n}`);
  return n;
}

export function optBool(v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(field, `expected true or false, got ${describeType(v)}`);
  return v;
}

export function optStrList(v: unknown, field: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw bad(field, `expected a list of strings, got ${describeType(v)}`);
  return v.map((x, i) => str(x, `${field}[${i}]`));
}

export function optStrMap(v: unknown, field: string): Record<string, string> | undefined {
  const o = optObj(v, field);
  if (!o) return undefined;
  for (const [k, x] of Object.entries(o)) str(x, `${field}.${k}`);
  return o as Record<string, string>;
}

export function name(kind: NameKind, v: unknown, field: string): string {
  const problem = nameProblem(kind, v);
  if (problem !== undefined) throw bad(field, problem);
  return v as string;
}

export function oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    throw bad(field, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, got ${describeType(v)}`);
  return v as T;
}

export function optOneOf<T extends string>(v: unknown, field: string, allowed: readonly T[]): T | undefined {
  return v === undefined || v === null ? undefined : oneOf(v, field, allowed);
}

/** A Go duration string (or a number of nanoseconds, as Consul's JSON also accepts); ms. */
export function optDuration(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw bad(field, `expected a non-negative duration, got ${v}`);
    return v / 1e6;
  }
  const s = str(v, field);
  const r = parseDuration(s);
  if (!r.ok) throw bad(field, `expected a duration like "10s" or "1m", got "${s}" (${r.reason})`);
  return r.value;
}

/** Reject keys the schema does not know, so a typo does not silently do nothing. */
export function onlyKeys(o: Json, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      throw bad(field ? `${field}.${k}` : k, `unknown field; expected one of ${allowed.join(', ')}`);
}
