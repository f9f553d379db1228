// Durations in Go's syntax ("72h", "1h30m", "500ms", "1.5s"), as Consul's config and API use them
// (`LeafCertTTL`, `?wait=`). Values are milliseconds inside meshfed.

import { fail, ok, type Result } from './errors.js';

const UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const PART_RE = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/** Parse a Go duration into milliseconds. A bare number is taken as seconds (Consul accepts `wait=30`). */
export function parseDuration(input: string): Result<number> {
  const s = input.trim();
  if (s === '') return fail('empty duration');
  if (/^\d+(\.\d+)?$/.test(s)) return ok(Number(s) * 1000);
  if (s === '0') return ok(0);
  let i = 0;
  let total = 0;
  let sign = 1;
  if (s[0] === '-' || s[0] === '+') {
    sign = s[0] === '-' ? -1 : 1;
    i = 1;
  }
  if (i >= s.length) return fail(`"${input}" is not a duration`);
  while (i < s.length) {
    PART_RE.lastIndex = i;
    const m = PART_RE.exec(s);
    if (!m) return fail(`"${input}" is not a duration (expected e.g. 72h, 30s, 500ms, 1h30m)`);
    total += Number(m[1]) * UNITS[m[2]!]!;
    i = PART_RE.lastIndex;
  }
  return ok(sign * total);
}

/** Format milliseconds the way Go prints a duration: 72h0m0s, 1m30s, 500ms, 0s. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  if (rest < 1000) return `${neg ? '-' : ''}${trimNum(rest)}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = trimNum(rest / 1000);
  const out = h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
  return neg ? `-${out}` : out;
}

function trimNum(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}
