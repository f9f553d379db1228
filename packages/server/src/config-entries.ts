// Config entries: validation per kind (errors name the field) and their store layout. Stored under
// `config_entries` as `<Kind>/<Name>` so they replicate as one table. Resolver `Filter` expressions
// are only checked to be strings: the proxy evaluates them.

import { nameProblem } from '@meshfed/core';
import {
  bad,
  name,
  obj,
  optBool,
  optDuration,
  optNum,
  optObj,
  optOneOf,
  optStr,
  optStrList,
  optStrMap,
  str,
  type Json,
} from './validate.js';

export const T_CONFIG = 'config_entries';

export const configKinds = [
  'proxy-defaults',
  'service-defaults',
  'service-resolver',
  'service-splitter',
  'service-router',
  'service-intentions',
] as const;
export type ConfigKind = (typeof configKinds)[number];

export const protocols = ['tcp', 'http', 'http2', 'grpc'] as const;
const meshGatewayModes = ['', 'none', 'local', 'remote'] as const;

export function configKey(kind: string, entryName: string): string {
  return `${kind}/${entryName}`;
}

export function parseKind(v: unknown, field = 'Kind'): ConfigKind {
  const k = typeof v === 'string' ? v.toLowerCase() : v;
  if (typeof k !== 'string' || !(configKinds as readonly string[]).includes(k))
    throw bad(
      field,
      `unknown config entry kind ${JSON.stringify(v)}; expected one of ${configKinds.join(', ')}`,
    );
  return k as ConfigKind;
}

function meshGateway(v: unknown, field: string): void {
  const o = optObj(v, field);
  if (o) optOneOf(o['Mode'], `${field}.Mode`, meshGatewayModes);
}

function serviceOrWildcard(v: unknown, field: string): string {
  if (v === '*') return '*';
  return name('service', v, field);
}

/** Validate a config entry body; returns the normalised entry (Kind lowercased, no index fields). */
export function validateConfigEntry(body: unknown): { kind: ConfigKind; name: string; entry: Json } {
  const b = { ...obj(body, 'body') };
  const kind = parseKind(b['Kind']);
  delete b['CreateIndex'];
  delete b['ModifyIndex'];
  b['Kind'] = kind;
  const entryName = str(b['Name'], 'Name');
  optStrMap(b['Meta'], 'Meta');
  switch (kind) {
    case 'proxy-defaults':
      if (entryName !== 'global')
        throw bad('Name', `proxy-defaults must be named "global", got "${entryName}"`);
      optObj(b['Config'], 'Config');
      meshGateway(b['MeshGateway'], 'MeshGateway');
      optOneOf(b['Mode'], 'Mode', ['', 'direct', 'transparent'] as const);
      {
        const cfg = optObj(b['Config'], 'Config');
        if (cfg && cfg['protocol'] !== undefined) optOneOf(cfg['protocol'], 'Config.protocol', protocols);
      }
      break;
    case 'service-defaults':
      name('service', entryName, 'Name');
      optOneOf(b['Protocol'], 'Protocol', protocols);
      meshGateway(b['MeshGateway'], 'MeshGateway');
      optStrList(b['ExternalSNI'] === undefined ? undefined : [b['ExternalSNI']], 'ExternalSNI');
      break;
    case 'service-resolver':
      name('service', entryName, 'Name');
      validateResolver(b);
      break;
    case 'service-splitter':
      name('service', entryName, 'Name');
      validateSplitter(b);
      break;
    case 'service-router':
      name('service', entryName, 'Name');
      validateRouter(b);
      break;
    case 'service-intentions':
      serviceOrWildcard(entryName, 'Name');
      validateIntentionSources(b);
      break;
  }
  return { kind, name: entryName, entry: b };
}

/** Protocols whose discovery chain may route and split (Consul: "advanced routing"). */
const L7_PROTOCOLS = new Set(['http', 'http2', 'grpc']);

/**
 * The protocol a service speaks: its service-defaults `Protocol`, else proxy-defaults
 * `Config.protocol`, else tcp. `get` reads an entry by key with the pending write applied.
 */
export function serviceProtocol(service: string, get: (key: string) => Json | undefined): string {
  const own = get(configKey('service-defaults', service))?.['Protocol'];
  if (typeof own === 'string' && own !== '') return own;
  const cfg = get(configKey('proxy-defaults', 'global'))?.['Config'] as Json | undefined;
  const global = cfg?.['protocol'];
  return typeof global === 'string' && global !== '' ? global : 'tcp';
}

/**
 * Refuse a write or delete that would leave a service-router or service-splitter on a service whose
 * protocol cannot be routed (Consul refuses it the same way: routers and splitters act on HTTP
 * requests; on a tcp service they would silently do nothing). `routed` lists the services that have
 * a router or splitter, with the pending write applied.
 */
export function checkRoutableProtocols(
  change: { kind: ConfigKind; name: string },
  get: (key: string) => Json | undefined,
  routed: () => string[],
): void {
  let affected: string[];
  if (change.kind === 'service-router' || change.kind === 'service-splitter')
    affected = get(configKey(change.kind, change.name)) ? [change.name] : [];
  else if (change.kind === 'service-defaults') affected = routed().filter((svc) => svc === change.name);
  else if (change.kind === 'proxy-defaults') affected = routed();
  else return;
  for (const svc of affected) {
    const protocol = serviceProtocol(svc, get);
    if (L7_PROTOCOLS.has(protocol)) continue;
    const which = ['service-router', 'service-splitter'].filter((k) => get(configKey(k, svc))).join(' and ');
    throw bad(
      change.kind === 'service-router' || change.kind === 'service-splitter' ? 'Kind' : 'Protocol',
      `discovery chain "${svc}" uses protocol "${protocol}", which does not permit advanced routing or ` +
        `splitting (it has a ${which}); set Protocol to http, http2 or grpc in service-defaults "${svc}" ` +
        `(or Config.protocol in proxy-defaults) first`,
    );
  }
}

function subsetRef(o: Json, field: string): void {
  if (o['Service'] !== undefined && o['Service'] !== '') name('service', o['Service'], `${field}.Service`);
  if (o['ServiceSubset'] !== undefined && o['ServiceSubset'] !== '')
    name('subset', o['ServiceSubset'], `${field}.ServiceSubset`);
  if (o['Datacenter'] !== undefined && o['Datacenter'] !== '')
    name('datacenter', o['Datacenter'], `${field}.Datacenter`);
}

function validateResolver(b: Json): void {
  const subsets = optObj(b['Subsets'], 'Subsets') ?? {};
  for (const [sub, raw] of Object.entries(subsets)) {
    const problem = nameProblem('subset', sub);
    if (problem) throw bad(`Subsets.${sub}`, problem);
    const s = obj(raw, `Subsets.${sub}`);
    optStr(s['Filter'], `Subsets.${sub}.Filter`);
    optBool(s['OnlyPassing'], `Subsets.${sub}.OnlyPassing`);
  }
  const def = optStr(b['DefaultSubset'], 'DefaultSubset');
  if (def && !(def in subsets)) throw bad('DefaultSubset', `"${def}" is not one of the Subsets`);
  optDuration(b['ConnectTimeout'], 'ConnectTimeout');
  const redirect = optObj(b['Redirect'], 'Redirect');
  if (redirect) subsetRef(redirect, 'Redirect');
  const failover = optObj(b['Failover'], 'Failover') ?? {};
  for (const [sub, raw] of Object.entries(failover)) {
    if (sub !== '*' && !(sub in subsets))
      throw bad(`Failover.${sub}`, `"${sub}" is neither "*" nor one of the Subsets`);
    const f = obj(raw, `Failover.${sub}`);
    subsetRef(f, `Failover.${sub}`);
    const dcs = optStrList(f['Datacenters'], `Failover.${sub}.Datacenters`) ?? [];
    dcs.forEach((dc, i) => name('datacenter', dc, `Failover.${sub}.Datacenters[${i}]`));
    const targets = f['Targets'];
    if (targets !== undefined && targets !== null) {
      if (!Array.isArray(targets)) throw bad(`Failover.${sub}.Targets`, 'expected a list');
      targets.forEach((t, i) =>
        subsetRef(obj(t, `Failover.${sub}.Targets[${i}]`), `Failover.${sub}.Targets[${i}]`),
      );
    }
    if (dcs.length === 0 && !f['Service'] && !f['ServiceSubset'] && !Array.isArray(targets))
      throw bad(`Failover.${sub}`, 'needs at least one of Service, ServiceSubset, Datacenters, Targets');
  }
  if (redirect && Object.keys(failover).length > 0)
    throw bad('Redirect', 'Redirect and Failover cannot both be set');
}

function validateSplitter(b: Json): void {
  const splits = b['Splits'];
  if (!Array.isArray(splits) || splits.length === 0) throw bad('Splits', 'expected a non-empty list');
  let total = 0;
  splits.forEach((raw, i) => {
    const s = obj(raw, `Splits[${i}]`);
    const w = optNum(s['Weight'], `Splits[${i}].Weight`, 0, 100);
    if (w === undefined) throw bad(`Splits[${i}].Weight`, 'is required');
    total += w;
    subsetRef(s, `Splits[${i}]`);
  });
  if (Math.abs(total - 100) > 0.01)
    throw bad('Splits', `weights must add up to 100, they add up to ${total}`);
}

function validateRouter(b: Json): void {
  const routes = b['Routes'];
  if (routes === undefined || routes === null) return;
  if (!Array.isArray(routes)) throw bad('Routes', 'expected a list');
  routes.forEach((raw, i) => {
    const f = `Routes[${i}]`;
    const r = obj(raw, f);
    const match = optObj(r['Match'], `${f}.Match`);
    const http = match ? optObj(match['HTTP'], `${f}.Match.HTTP`) : undefined;
    if (http) {
      const paths = ['PathExact', 'PathPrefix', 'PathRegex'].filter(
        (k) => http[k] !== undefined && http[k] !== '',
      );
      if (paths.length > 1)
        throw bad(`${f}.Match.HTTP`, `only one of PathExact, PathPrefix, PathRegex, got ${paths.join(', ')}`);
      for (const k of paths) {
        const p = str(http[k], `${f}.Match.HTTP.${k}`);
        if (k !== 'PathRegex' && !p.startsWith('/'))
          throw bad(`${f}.Match.HTTP.${k}`, `must start with "/", got "${p}"`);
        if (k === 'PathRegex') {
          try {
            new RegExp(p);
          } catch (err) {
            throw bad(`${f}.Match.HTTP.PathRegex`, `not a valid regular expression: ${String(err)}`);
          }
        }
      }
      optStrList(http['Methods'], `${f}.Match.HTTP.Methods`);
      for (const key of ['Header', 'QueryParam']) {
        const list = http[key];
        if (list === undefined || list === null) continue;
        if (!Array.isArray(list)) throw bad(`${f}.Match.HTTP.${key}`, 'expected a list');
        list.forEach((h, j) =>
          str(obj(h, `${f}.Match.HTTP.${key}[${j}]`)['Name'], `${f}.Match.HTTP.${key}[${j}].Name`),
        );
      }
    }
    const dest = optObj(r['Destination'], `${f}.Destination`);
    if (dest) {
      subsetRef(dest, `${f}.Destination`);
      optStr(dest['PrefixRewrite'], `${f}.Destination.PrefixRewrite`);
      optDuration(dest['RequestTimeout'], `${f}.Destination.RequestTimeout`);
      optNum(dest['NumRetries'], `${f}.Destination.NumRetries`, 0, 100);
      optBool(dest['RetryOnConnectFailure'], `${f}.Destination.RetryOnConnectFailure`);
    }
  });
}

function validateIntentionSources(b: Json): void {
  const sources = b['Sources'];
  if (!Array.isArray(sources)) throw bad('Sources', 'expected a list');
  const seen = new Set<string>();
  sources.forEach((raw, i) => {
    const f = `Sources[${i}]`;
    const s = obj(raw, f);
    const src = serviceOrWildcard(s['Name'], `${f}.Name`);
    const ns = optStr(s['Namespace'], `${f}.Namespace`) || 'default';
    if (seen.has(`${ns}/${src}`)) throw bad(`${f}.Name`, `source "${src}" is listed twice`);
    seen.add(`${ns}/${src}`);
    validateActionOrPermissions(s, f);
  });
}

/** Exactly one of Action and Permissions; Permissions are stored for the L7 work, checked for shape. */
export function validateActionOrPermissions(s: Json, f: string): void {
  const action = optOneOf(s['Action'], `${f}.Action`, ['allow', 'deny'] as const);
  const perms = s['Permissions'];
  const hasPerms = Array.isArray(perms) && perms.length > 0;
  if (action && hasPerms) throw bad(`${f}.Action`, 'give either Action or Permissions, not both');
  if (!action && !hasPerms)
    throw bad(`${f}.Action`, 'is required ("allow" or "deny") unless Permissions are given');
  if (perms !== undefined && perms !== null) {
    if (!Array.isArray(perms)) throw bad(`${f}.Permissions`, 'expected a list');
    perms.forEach((p, j) => {
      const o = obj(p, `${f}.Permissions[${j}]`);
      optOneOf(o['Action'], `${f}.Permissions[${j}].Action`, ['allow', 'deny'] as const);
      if (o['Action'] === undefined) throw bad(`${f}.Permissions[${j}].Action`, 'is required');
      optObj(o['HTTP'], `${f}.Permissions[${j}].HTTP`);
    });
  }
}
