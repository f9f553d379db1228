// A small subset of HashiCorp's bexpr, enough for service-resolver subset filters over a health
// entry (`Service.Meta.version == v1`, `"canary" in Service.Tags`, `Service.Tags contains x`):
// ==, !=, in, not in, contains, not contains, is empty, is not empty, and/or/not, parentheses.
// Selectors are dotted paths (`Service.Meta.version`, or `Service.Meta["odd key"]`). A filter is
// compiled once when the resolver entry arrives; a bad filter is a MeshError, never a crash.

import { MeshError } from '@meshfed/core';

type Node =
  | { op: 'and' | 'or'; left: Node; right: Node }
  | { op: 'not'; expr: Node }
  | { op: '==' | '!=' | 'contains' | 'not contains'; selector: string[]; value: string }
  | { op: 'in' | 'not in'; selector: string[]; value: string }
  | { op: 'empty' | 'not empty'; selector: string[] };

type Tok = { t: 'word' | 'str' | 'op' | '(' | ')' | 'sel'; v: string; path?: string[] };

function bad(expr: string, why: string): MeshError {
  return new MeshError('MESH_ERR_PROXY_FILTER_INVALID', `filter "${expr}": ${why}`, {
    details: { filter: expr },
  });
}

function tokenize(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      toks.push({ t: c, v: c });
      i++;
    } else if (c === '=' || c === '!') {
      if (src[i + 1] !== '=') throw bad(src, `expected "${c}=" at position ${i + 1}`);
      toks.push({ t: 'op', v: `${c}=` });
      i += 2;
    } else if (c === '"' || c === '`') {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw bad(src, `unterminated string at position ${i + 1}`);
      const raw = src.slice(i + 1, end);
      toks.push({ t: 'str', v: c === '"' ? raw.replace(/\\(.)/g, '$1') : raw });
      i = end + 1;
    } else {
      // a word or a selector: letters, digits, _ - . / : and ["quoted"] segments
      const path: string[] = [];
      let cur = '';
      while (i < src.length && !/[\s()=!]/.test(src[i]!)) {
        const ch = src[i]!;
        if (ch === '[') {
          const m = /^\["((?:[^"\\]|\\.)*)"\]/.exec(src.slice(i));
          if (!m) throw bad(src, `bad index at position ${i + 1}`);
          if (cur) path.push(cur);
          cur = '';
          path.push(m[1]!.replace(/\\(.)/g, '$1'));
          i += m[0].length;
        } else if (ch === '.') {
          path.push(cur);
          cur = '';
          i++;
        } else {
          cur += ch;
          i++;
        }
      }
      if (cur) path.push(cur);
      toks.push({ t: path.length > 1 ? 'sel' : 'word', v: path.join('.'), path });
    }
  }
  return toks;
}

export function compileFilter(expr: string): (value: unknown) => boolean {
  const toks = tokenize(expr);
  let p = 0;
  const peek = (): Tok | undefined => toks[p];
  const isWord = (w: string, k = 0): boolean => toks[p + k]?.t === 'word' && toks[p + k]!.v === w;
  const selector = (): string[] => {
    const t = toks[p++];
    if (!t || (t.t !== 'sel' && t.t !== 'word')) throw bad(expr, 'expected a selector');
    return t.path ?? [t.v];
  };
  const value = (): string => {
    const t = toks[p++];
    if (!t || (t.t !== 'str' && t.t !== 'word' && t.t !== 'sel')) throw bad(expr, 'expected a value');
    return t.v;
  };
  const parseOr = (): Node => {
    let left = parseAnd();
    while (isWord('or')) {
      p++;
      left = { op: 'or', left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): Node => {
    let left = parseNot();
    while (isWord('and')) {
      p++;
      left = { op: 'and', left, right: parseNot() };
    }
    return left;
  };
  const parseNot = (): Node => {
    if (isWord('not')) {
      p++;
      return { op: 'not', expr: parseNot() };
    }
    return parsePrimary();
  };
  const parsePrimary = (): Node => {
    const t = peek();
    if (!t) throw bad(expr, 'unexpected end');
    if (t.t === '(') {
      p++;
      const n = parseOr();
      if (peek()?.t !== ')') throw bad(expr, 'missing ")"');
      p++;
      return n;
    }
    // value in selector | value not in selector
    if (isWord('in', 1) || (isWord('not', 1) && isWord('in', 2))) {
      const v = value();
      const neg = isWord('not');
      p += neg ? 2 : 1;
      return { op: neg ? 'not in' : 'in', value: v, selector: selector() };
    }
    const sel = selector();
    const o = peek();
    if (o?.t === 'op') {
      p++;
      return { op: o.v as '==' | '!=', selector: sel, value: value() };
    }
    if (isWord('contains')) {
      p++;
      return { op: 'contains', selector: sel, value: value() };
    }
    if (isWord('not') && isWord('contains', 1)) {
      p += 2;
      return { op: 'not contains', selector: sel, value: value() };
    }
    if (isWord('is') && isWord('empty', 1)) {
      p += 2;
      return { op: 'empty', selector: sel };
    }
    if (isWord('is') && isWord('not', 1) && isWord('empty', 2)) {
      p += 3;
      return { op: 'not empty', selector: sel };
    }
    throw bad(expr, `expected an operator after ${sel.join('.')}`);
  };
  const root = parseOr();
  if (p !== toks.length) throw bad(expr, `unexpected "${toks[p]!.v}"`);
  return (v) => evaluate(root, v);
}

function lookup(obj: unknown, path: readonly string[]): unknown {
  let cur = obj;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, k)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function str(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function has(container: unknown, v: string): boolean {
  if (Array.isArray(container)) return container.some((x) => str(x) === v);
  if (typeof container === 'string') return container.includes(v);
  if (container && typeof container === 'object') return Object.hasOwn(container, v);
  return false;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v).length === 0;
  return false;
}

function evaluate(n: Node, v: unknown): boolean {
  switch (n.op) {
    case 'and':
      return evaluate(n.left, v) && evaluate(n.right, v);
    case 'or':
      return evaluate(n.left, v) || evaluate(n.right, v);
    case 'not':
      return !evaluate(n.expr, v);
    case '==':
      return str(lookup(v, n.selector)) === n.value;
    case '!=':
      return str(lookup(v, n.selector)) !== n.value;
    case 'contains':
      return has(lookup(v, n.selector), n.value);
    case 'not contains':
      return !has(lookup(v, n.selector), n.value);
    case 'in':
      return has(lookup(v, n.selector), n.value);
    case 'not in':
      return !has(lookup(v, n.selector), n.value);
    case 'empty':
      return isEmpty(lookup(v, n.selector));
    case 'not empty':
      return !isEmpty(lookup(v, n.selector));
  }
}
