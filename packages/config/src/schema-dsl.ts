// A tiny schema language for meshfed's configuration. One schema gives four things at once, so
// they cannot drift apart: validation with precise errors, defaults, the TypeScript type of the
// runtime config (`Infer<>`), and the reference documentation (docs/configuration.md).
//
// A spec validates a plain value (already parsed from YAML, or a string from an env var / flag when
// `fromText` is set) and either returns the typed value or reports what was expected.

import { describeType, nameProblem, parseDuration, parseHostPort, type NameKind } from '@meshfed/core';

export type Path = (string | number)[];

export interface Issue {
  path: Path;
  message: string;
  /** Issues about a key itself (unknown key) point at the key, not the value. */
  atKey?: boolean;
  /** Where the value came from when not from a file ("environment variable MESHFED_PORTS_HTTP"). */
  source?: string;
}

/** A value given as text by an env var or a flag; scalars parse it ("8500" → 8500). */
export class TextValue {
  constructor(
    readonly text: string,
    readonly source: string,
  ) {}
}

export interface CheckContext {
  issues: Issue[];
  /** True when the value came from an env var or flag: scalars are parsed from text. */
  fromText: boolean;
}

interface BaseSpec<T> {
  readonly kind: string;
  readonly doc: string;
  /** What the value must be, in words, for errors and docs ("an integer 1-65535"). */
  readonly expected: string;
  readonly default: T | undefined;
  /** How the default is written in YAML, when that differs from the runtime value (durations). */
  readonly defaultText?: string;
  readonly optional: boolean;
  /** Never print the value (tokens, keys). */
  readonly secret: boolean;
  check(value: unknown, path: Path, ctx: CheckContext): T | undefined;
}

export type Spec<T> = BaseSpec<T>;
export type Infer<S> = S extends Spec<infer T> ? T : never;

export type ObjectValue<F extends Record<string, Spec<unknown>>> = { [K in keyof F]: Infer<F[K]> };

export interface ObjectSpec<F extends Record<string, Spec<unknown>>, T = ObjectValue<F>> extends BaseSpec<T> {
  readonly kind: 'object';
  readonly fields: F;
  /** When the key is absent: fill in every default (true), or leave the object out (false). */
  readonly fillWhenAbsent: boolean;
}
export interface ListSpec<T> extends BaseSpec<T[]> {
  readonly kind: 'list';
  readonly of: Spec<T>;
}
export interface MapSpec<T> extends BaseSpec<Record<string, T>> {
  readonly kind: 'map';
  readonly of: Spec<T>;
}

interface Opts<T> {
  default?: T;
  optional?: boolean;
  secret?: boolean;
}

function fail(ctx: CheckContext, path: Path, expected: string, value: unknown, secret = false): undefined {
  const found = secret ? 'a value that does not fit' : describeType(value);
  ctx.issues.push({ path, message: `expected ${expected}; found ${found}` });
  return undefined;
}

function scalar<T>(
  kind: string,
  doc: string,
  expected: string,
  opts: Opts<T>,
  parse: (value: unknown, ctx: CheckContext) => { ok: true; value: T } | { ok: false; why?: string },
): Spec<T> {
  return {
    kind,
    doc,
    expected,
    default: opts.default,
    optional: opts.optional ?? opts.default !== undefined,
    secret: opts.secret ?? false,
    check(value, path, ctx) {
      if (value instanceof TextValue) {
        const r = parse(value.text, { ...ctx, fromText: true });
        if (r.ok) return r.value;
        const found = this.secret ? 'a value that does not fit' : describeType(value.text);
        ctx.issues.push({
          path,
          source: value.source,
          message: r.why ?? `expected ${expected}; found ${found}`,
        });
        return undefined;
      }
      const r = parse(value, ctx);
      if (r.ok) return r.value;
      if (r.why) {
        ctx.issues.push({ path, message: r.why });
        return undefined;
      }
      return fail(ctx, path, expected, value, this.secret);
    },
  };
}

export function str(
  doc: string,
  opts: Opts<string> & { pattern?: RegExp; patternText?: string } = {},
): Spec<string> {
  const expected = opts.patternText ?? 'a string';
  return scalar('string', doc, expected, opts, (v) => {
    if (typeof v === 'number' && !opts.pattern) return { ok: true, value: String(v) };
    if (typeof v !== 'string') return { ok: false };
    if (opts.pattern && !opts.pattern.test(v)) return { ok: false };
    return { ok: true, value: v };
  });
}

export function int(doc: string, opts: Opts<number> & { min?: number; max?: number } = {}): Spec<number> {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  const range =
    opts.min !== undefined && opts.max !== undefined
      ? ` ${min}-${max}`
      : opts.min !== undefined
        ? ` >= ${min}`
        : '';
  return scalar('integer', doc, `an integer${range}`, opts, (v, ctx) => {
    const n = ctx.fromText && typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) return { ok: false };
    return { ok: true, value: n };
  });
}

export function port(doc: string, opts: Opts<number> = {}): Spec<number> {
  return int(doc, { ...opts, min: 0, max: 65535 });
}

export function bool(doc: string, opts: Opts<boolean> = {}): Spec<boolean> {
  return scalar('boolean', doc, 'true or false', opts, (v, ctx) => {
    if (typeof v === 'boolean') return { ok: true, value: v };
    if (ctx.fromText && typeof v === 'string') {
      const t = v.trim().toLowerCase();
      if (['true', '1', 'yes'].includes(t)) return { ok: true, value: true };
      if (['false', '0', 'no'].includes(t)) return { ok: true, value: false };
    }
    return { ok: false };
  });
}

/** A Go duration ("72h", "30s"); the runtime value is milliseconds. */
export function duration(
  doc: string,
  opts: Opts<string> & { minMs?: number; maxMs?: number } = {},
): Spec<number> {
  const { default: def, ...rest } = opts;
  const parsed = def === undefined ? undefined : parseDuration(def);
  if (parsed && !parsed.ok) throw new Error(`bad default duration ${def}`);
  const spec = scalar<number>(
    'duration',
    doc,
    'a duration such as 30s, 5m or 72h',
    { ...rest, ...(parsed?.ok ? { default: parsed.value } : {}) },
    (v) => {
      if (typeof v !== 'string') return { ok: false };
      const r = parseDuration(v);
      if (!r.ok) return { ok: false };
      if (opts.minMs !== undefined && r.value < opts.minMs)
        return { ok: false, why: `duration ${v} is below the minimum` };
      if (opts.maxMs !== undefined && r.value > opts.maxMs)
        return { ok: false, why: `duration ${v} is above the maximum` };
      return { ok: true, value: r.value };
    },
  );
  return def === undefined ? spec : { ...spec, defaultText: def };
}

export function oneOf<const V extends readonly string[]>(
  doc: string,
  values: V,
  opts: Opts<V[number]> = {},
): Spec<V[number]> {
  return scalar('enum', doc, `one of ${values.join(', ')}`, opts, (v) =>
    typeof v === 'string' && (values as readonly string[]).includes(v)
      ? { ok: true, value: v as V[number] }
      : { ok: false },
  );
}

/** A single-label name (datacenter, service, node…), validated like Consul: see core/names.ts. */
export function name(doc: string, kind: NameKind, opts: Opts<string> = {}): Spec<string> {
  return scalar('name', doc, `a ${kind} name (lowercase DNS label)`, opts, (v) => {
    const problem = nameProblem(kind, v);
    return problem === undefined ? { ok: true, value: v as string } : { ok: false, why: problem };
  });
}

/** host:port */
export function address(doc: string, opts: Opts<string> & { defaultPort?: number } = {}): Spec<string> {
  return scalar('address', doc, 'an address host:port', opts, (v) => {
    if (typeof v !== 'string') return { ok: false };
    const r = parseHostPort(v, opts.defaultPort);
    return r.ok ? { ok: true, value: v } : { ok: false, why: `expected an address host:port; ${r.reason}` };
  });
}

export function obj<F extends Record<string, Spec<unknown>>>(doc: string, fields: F): ObjectSpec<F>;
export function obj<F extends Record<string, Spec<unknown>>>(
  doc: string,
  fields: F,
  opts: { optional: true },
): ObjectSpec<F, ObjectValue<F> | undefined>;
export function obj<F extends Record<string, Spec<unknown>>>(
  doc: string,
  fields: F,
  opts: { optional?: boolean } = {},
): ObjectSpec<F, ObjectValue<F> | undefined> {
  const fillWhenAbsent = !opts.optional;
  return {
    kind: 'object',
    doc,
    expected: 'a map',
    fields,
    default: undefined,
    optional: true,
    secret: false,
    fillWhenAbsent,
    check(value, path, ctx) {
      if (value === undefined || value === null) value = {};
      if (typeof value !== 'object' || Array.isArray(value) || value instanceof TextValue)
        return fail(ctx, path, 'a map', value instanceof TextValue ? value.text : value);
      const input = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(input)) {
        if (!Object.hasOwn(fields, key)) {
          const hint = didYouMean(key, Object.keys(fields));
          ctx.issues.push({
            path: [...path, key],
            atKey: true,
            message: `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : `; known keys: ${Object.keys(fields).join(', ')}`}`,
          });
        }
      }
      for (const [key, spec] of Object.entries(fields)) {
        const v = input[key];
        if (v === undefined || v === null) {
          if (spec.kind === 'object' && (spec as ObjectSpec<F>).fillWhenAbsent)
            out[key] = spec.check({}, [...path, key], ctx);
          else if (spec.default !== undefined) out[key] = structuredClone(spec.default);
          else if (!spec.optional)
            ctx.issues.push({ path: [...path, key], message: `missing required key "${key}": ${spec.doc}` });
          continue;
        }
        out[key] = spec.check(v, [...path, key], ctx);
      }
      return out as ObjectValue<F>;
    },
  };
}

export function list<T>(doc: string, of: Spec<T>, opts: Opts<T[]> = {}): ListSpec<T> {
  return {
    kind: 'list',
    doc,
    expected: `a list of ${of.expected}`,
    of,
    default: opts.default ?? [],
    optional: true,
    secret: opts.secret ?? false,
    check(value, path, ctx) {
      if (value instanceof TextValue) {
        const src = value.source;
        value = value.text
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
          .map((s) => new TextValue(s, src));
      }
      if (!Array.isArray(value)) {
        // A single scalar where a list is expected is accepted as a list of one, as Consul does.
        if (of.kind !== 'object' && of.kind !== 'list' && (typeof value !== 'object' || value === null))
          value = [value];
        else return fail(ctx, path, this.expected, value);
      }
      return (value as unknown[]).map((v, i) => of.check(v, [...path, i], ctx)) as T[];
    },
  };
}

export function map<T>(doc: string, of: Spec<T>): MapSpec<T> {
  return {
    kind: 'map',
    doc,
    expected: `a map of ${of.expected}`,
    of,
    default: {},
    optional: true,
    secret: false,
    check(value, path, ctx) {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        return fail(ctx, path, this.expected, value);
      const out: Record<string, T> = {};
      for (const [k, v] of Object.entries(value)) out[k] = of.check(v, [...path, k], ctx) as T;
      return out;
    },
  };
}

/** The closest known key within a small edit distance, for "did you mean". */
export function didYouMean(input: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(input.toLowerCase(), c.toLowerCase());
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  return best !== undefined && bestDist <= Math.max(2, Math.floor(input.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
