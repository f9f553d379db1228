// Loading configuration: YAML files (later files override earlier ones), then MESHFED_* environment
// variables, then command-line flags; validated against the schema in one pass so the operator sees
// every problem at once, each as `file:line:col: key.path: what was expected; what was found`.
//
// The result is the frozen runtime config: fully defaulted, durations in milliseconds, derived
// values (primary_datacenter, node_name, advertise addresses) filled in. Components never see YAML.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isMap, isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { MeshError, nameProblem } from '@meshfed/core';
import { configSchema, type MeshfedConfig } from './schema.js';
import { TextValue, type Issue, type Path, type Spec } from './schema-dsl.js';

export interface ConfigIssue {
  /** file:line:col, or the env var / flag that carried the value. */
  where: string;
  /** Dotted key path, e.g. gossip.profile or services[0].port. */
  key: string;
  message: string;
}

export interface LoadOptions {
  files?: readonly string[];
  /** Environment to read MESHFED_* variables from (default: none). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Flag overrides by dotted key path (`ports.http`), as text. */
  flags?: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** Inline YAML sources (tests, stdin), as [name, text]. */
  sources?: readonly (readonly [string, string])[];
}

export type LoadResult = { ok: true; config: MeshfedConfig } | { ok: false; issues: ConfigIssue[] };

interface ParsedSource {
  name: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

export function loadConfig(options: LoadOptions = {}): LoadResult {
  const issues: ConfigIssue[] = [];
  const parsed: ParsedSource[] = [];
  const sources: [string, string][] = [];
  for (const file of options.files ?? []) {
    try {
      sources.push([file, readFileSync(file, 'utf8')]);
    } catch (err) {
      issues.push({
        where: file,
        key: '',
        message: `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      });
    }
  }
  sources.push(...(options.sources ?? []).map(([n, t]) => [n, t] as [string, string]));

  let merged: Record<string, unknown> = {};
  // For each top-level value, remember which source it came from, to point errors at the right file.
  const owner = new Map<string, ParsedSource>();
  for (const [name, text] of sources) {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const src = { name, doc, lines };
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = lines.linePos(e.pos[0]);
        issues.push({
          where: `${name}:${pos.line}:${pos.col}`,
          key: '',
          message: yamlMessage(e.code, e.message),
        });
      }
      continue;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) {
      issues.push({
        where: `${name}:1:1`,
        key: '',
        message: 'the file must be a map of keys (datacenter: dc1, …)',
      });
      continue;
    }
    parsed.push(src);
    for (const key of Object.keys(value)) owner.set(key, src);
    merged = deepMerge(merged, value as Record<string, unknown>);
  }

  for (const [path, text, source] of envOverrides(options.env ?? {}))
    setPath(merged, path, new TextValue(text, source));
  for (const [key, value] of Object.entries(options.flags ?? {})) {
    if (value === undefined) continue;
    const path = key.split('.');
    const text = Array.isArray(value) ? value.join(',') : (value as string);
    const spec = specAt(path);
    if (!spec) {
      issues.push({ where: `flag --${key}`, key, message: 'no such configuration key' });
      continue;
    }
    setPath(merged, path, new TextValue(text, `flag --${key}`));
  }

  const ctxIssues: Issue[] = [];
  const config = configSchema.check(merged, [], { issues: ctxIssues, fromText: false }) as MeshfedConfig;
  for (const issue of ctxIssues) {
    const key = formatPath(issue.path);
    const where = issue.source ?? locate(issue, owner, parsed);
    issues.push({ where, key, message: issue.message });
  }
  if (issues.length === 0) crossChecks(config, issues, owner, parsed);
  if (issues.length > 0) return { ok: false, issues: issues.sort(byPosition) };
  return { ok: true, config: deepFreeze(resolveDerived(config)) };
}

/** Load or throw a MeshError listing every issue (for daemons: fail fast at start). */
export function loadConfigOrThrow(options: LoadOptions): MeshfedConfig {
  const r = loadConfig(options);
  if (r.ok) return r.config;
  throw new MeshError('MESH_ERR_CONFIG_INVALID', `invalid configuration:\n${formatIssues(r.issues)}`, {
    details: { issues: r.issues },
  });
}

export function formatIssues(issues: readonly ConfigIssue[]): string {
  return issues.map((i) => `  ${i.where}: ${i.key ? `${i.key}: ` : ''}${i.message}`).join('\n');
}

/** Values the schema cannot express alone: derived defaults. */
function resolveDerived(c: MeshfedConfig): MeshfedConfig {
  const node = c.node_name ?? sanitizeNodeName(hostname());
  const advertise = c.advertise_addr ?? c.bind_addr;
  return {
    ...c,
    primary_datacenter: c.primary_datacenter ?? c.datacenter,
    node_name: node,
    advertise_addr: advertise,
    advertise_addr_wan: c.advertise_addr_wan ?? advertise,
  };
}

/** Rules between keys, reported with the position of the key they are about. */
function crossChecks(
  c: MeshfedConfig,
  issues: ConfigIssue[],
  owner: Map<string, ParsedSource>,
  parsed: ParsedSource[],
): void {
  const at = (path: Path, message: string) =>
    issues.push({ where: locate({ path, message }, owner, parsed), key: formatPath(path), message });
  const ids = new Set<string>();
  c.services.forEach((s, i) => {
    const id = s.id ?? s.name;
    if (ids.has(id)) at(['services', i, 'id'], `duplicate service ID "${id}"; give each instance its own id`);
    ids.add(id);
    const kinds = (ch: { tcp?: string | undefined; http?: string | undefined; ttl?: number | undefined }) =>
      [ch.tcp, ch.http, ch.ttl].filter((x) => x !== undefined).length;
    if (s.check && kinds(s.check) !== 1)
      at(['services', i, 'check'], 'a check needs exactly one of tcp, http or ttl');
    s.checks.forEach((ch, j) => {
      if (kinds(ch) !== 1) at(['services', i, 'checks', j], 'a check needs exactly one of tcp, http or ttl');
    });
    const ports = new Set<number>();
    s.connect.sidecar_service.proxy.upstreams.forEach((u, j) => {
      if (ports.has(u.local_bind_port))
        at(
          ['services', i, 'connect', 'sidecar_service', 'proxy', 'upstreams', j, 'local_bind_port'],
          `port ${u.local_bind_port} is used by another upstream`,
        );
      ports.add(u.local_bind_port);
    });
  });
  const httpTls = c.tls.http;
  if (!isLoopbackAddr(c.client_addr) && !(httpTls.cert_file && httpTls.key_file))
    at(
      ['client_addr'],
      `the HTTP API on ${c.client_addr} is reachable from other hosts; set tls.http.cert_file and key_file, or bind to 127.0.0.1`,
    );
  if (c.acl.enabled && !c.acl.tokens.management)
    at(['acl', 'tokens', 'management'], 'acl.enabled needs a management token');
  if (c.ca.private_key_type === 'ec' && ![256, 384].includes(c.ca.private_key_bits))
    at(['ca', 'private_key_bits'], `ec keys are 256 or 384 bits, not ${c.ca.private_key_bits}`);
  if (c.ca.private_key_type === 'rsa' && ![2048, 4096].includes(c.ca.private_key_bits))
    at(['ca', 'private_key_bits'], `rsa keys are 2048 or 4096 bits, not ${c.ca.private_key_bits}`);
  if (c.gossip.encrypt !== undefined && c.gossip.encrypt !== '') {
    const key = Buffer.from(c.gossip.encrypt, 'base64');
    if (![16, 24, 32].includes(key.length) || key.toString('base64') !== c.gossip.encrypt.trim())
      at(
        ['gossip', 'encrypt'],
        'must be a base64 AES key of 16, 24 or 32 bytes (generate one with `meshfed keygen`)',
      );
  }
}

function isLoopbackAddr(a: string): boolean {
  return a === 'localhost' || a === '::1' || a.startsWith('127.');
}

/** Host names become DNS-label node names: lowercase, invalid characters to "-". */
export function sanitizeNodeName(host: string): string {
  const label = host
    .split('.')[0]!
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return nameProblem('node', label) === undefined ? label : 'node';
}

// --- env vars --------------------------------------------------------------------------------

/** MESHFED_<PATH> for every scalar or scalar-list key outside lists of maps: MESHFED_PORTS_HTTP. */
export function envVarName(path: readonly string[]): string {
  return `MESHFED_${path.join('_').toUpperCase()}`;
}

export function* scalarPaths(
  spec: Spec<unknown> = configSchema,
  path: string[] = [],
): Generator<[string[], Spec<unknown>]> {
  const s = spec as Spec<unknown> & { fields?: Record<string, Spec<unknown>>; of?: Spec<unknown> };
  if (s.kind === 'object' && s.fields) {
    for (const [k, f] of Object.entries(s.fields)) yield* scalarPaths(f, [...path, k]);
    return;
  }
  if (s.kind === 'list' && (s.of?.kind === 'object' || s.of?.kind === 'list')) return;
  if (s.kind === 'map') return;
  yield [path, s];
}

function envOverrides(env: Readonly<Record<string, string | undefined>>): [string[], string, string][] {
  const out: [string[], string, string][] = [];
  for (const [path] of scalarPaths()) {
    const name = envVarName(path);
    const v = env[name];
    if (v !== undefined && v !== '') out.push([path, v, `environment variable ${name}`]);
  }
  return out;
}

function specAt(path: readonly string[]): Spec<unknown> | undefined {
  let s: (Spec<unknown> & { fields?: Record<string, Spec<unknown>> }) | undefined = configSchema;
  for (const p of path) s = s?.fields?.[p];
  return s && s.kind !== 'object' ? s : undefined;
}

// --- positions -------------------------------------------------------------------------------

function locate(issue: Issue, owner: Map<string, ParsedSource>, parsed: ParsedSource[]): string {
  const top = issue.path[0];
  const src = (typeof top === 'string' ? owner.get(top) : undefined) ?? parsed[parsed.length - 1];
  if (!src) return '(defaults)';
  // Walk down as far as the document goes: a missing key points at its parent map.
  for (let n = issue.path.length; n >= 0; n--) {
    const path = issue.path.slice(0, n);
    let node: unknown;
    if (issue.atKey && n === issue.path.length) {
      const parent = path.length > 1 ? src.doc.getIn(path.slice(0, -1), true) : src.doc.contents;
      if (isMap(parent)) {
        const pair = parent.items.find(
          (p) => isNode(p.key) && (p.key as { value?: unknown }).value === path[path.length - 1],
        );
        node = pair?.key;
      }
    } else {
      node = n === 0 ? src.doc.contents : src.doc.getIn(path, true);
    }
    if (isNode(node) && node.range) {
      const pos = src.lines.linePos(node.range[0]);
      return `${src.name}:${pos.line}:${pos.col}`;
    }
  }
  return src.name;
}

/** Order issues as an editor would: by file, then line, then column. */
function byPosition(a: ConfigIssue, b: ConfigIssue): number {
  const split = (w: string) => {
    const m = /^(.*):(\d+):(\d+)$/.exec(w);
    return m ? ([m[1]!, Number(m[2]), Number(m[3])] as const) : ([w, 0, 0] as const);
  };
  const [fa, la, ca] = split(a.where);
  const [fb, lb, cb] = split(b.where);
  return fa < fb ? -1 : fa > fb ? 1 : la - lb || ca - cb;
}

export function formatPath(path: Path): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

function yamlMessage(code: string, message: string): string {
  const first = message.split('\n')[0] ?? message;
  if (code === 'DUPLICATE_KEY') return `${first} (each key may appear once per map)`;
  return `YAML ${code}: ${first}`;
}

// --- plumbing --------------------------------------------------------------------------------

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isPlainObject(prev) && isPlainObject(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof TextValue);
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = target;
  for (const p of path.slice(0, -1)) {
    if (!isPlainObject(cur[p])) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}
