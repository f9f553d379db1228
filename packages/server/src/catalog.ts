// The catalog: nodes, service instances and checks in the store, in Consul's JSON shapes. Owns the
// table layout (which key, which secondary key) and therefore which watch keys a read depends on.
// Never talks HTTP; never runs checks (checks.ts does).

import type { Store, StoredRow, WatchKey, WriteOp } from '@meshfed/store';
import {
  bad,
  name,
  obj,
  onlyKeys,
  optBool,
  optDuration,
  optObj,
  optOneOf,
  optPort,
  optStr,
  optStrList,
  optStrMap,
  str,
  type Json,
} from './validate.js';

export const T_NODES = 'nodes';
export const T_SERVICES = 'services';
export const T_CHECKS = 'checks';
/** Proxy instances by the service they front: secondary = destination service name. */
export const T_CONNECT = 'connect_index';

export type ServiceKind = 'typical' | 'connect-proxy' | 'mesh-gateway';
export type CheckStatus = 'passing' | 'warning' | 'critical';
export const checkStatuses: readonly CheckStatus[] = ['passing', 'warning', 'critical'];

export interface NodeValue {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: Record<string, string>;
  Meta: Record<string, string>;
}

export interface ServiceValue {
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  TaggedAddresses: Record<string, { Address: string; Port: number }>;
  Meta: Record<string, string>;
  Port: number;
  Kind: '' | 'connect-proxy' | 'mesh-gateway';
  Proxy?: Json;
  Connect?: Json;
  Weights: { Passing: number; Warning: number };
  EnableTagOverride: boolean;
}

export interface CheckDefinition {
  TCP?: string;
  HTTP?: string;
  Method?: string;
  Header?: Record<string, string[]>;
  TLSSkipVerify?: boolean;
  TTL?: string;
  AliasService?: string;
  AliasNode?: string;
  Interval?: string;
  Timeout?: string;
  DeregisterCriticalServiceAfter?: string;
}

export interface CheckValue {
  Node: string;
  CheckID: string;
  Name: string;
  Status: CheckStatus;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  Type: string;
  Definition: CheckDefinition;
}

const svcKey = (node: string, id: string): string => `${node}/${id}`;
const checkKey = (node: string, id: string): string => `${node}/${id}`;

// --- parsing ----------------------------------------------------------------------------------

const kindOf = (v: unknown, field: string): ServiceValue['Kind'] => {
  const k = optOneOf(v, field, ['', 'typical', 'connect-proxy', 'mesh-gateway'] as const) ?? '';
  return k === 'typical' ? '' : k;
};

function taggedServiceAddresses(v: unknown, field: string): ServiceValue['TaggedAddresses'] {
  const o = optObj(v, field) ?? {};
  const out: ServiceValue['TaggedAddresses'] = {};
  for (const [k, raw] of Object.entries(o)) {
    const a = obj(raw, `${field}.${k}`);
    out[k] = {
      Address: optStr(a['Address'] ?? a['address'], `${field}.${k}.Address`) ?? '',
      Port: optPort(a['Port'] ?? a['port'], `${field}.${k}.Port`) ?? 0,
    };
  }
  return out;
}

function parseProxy(v: unknown, field: string, kind: ServiceValue['Kind']): Json | undefined {
  const p = optObj(v, field);
  if (kind === 'connect-proxy') {
    if (!p) throw bad(field, 'a connect-proxy service needs Proxy with DestinationServiceName');
    name('service', p['DestinationServiceName'], `${field}.DestinationServiceName`);
  }
  if (!p) return undefined;
  optStr(p['DestinationServiceID'], `${field}.DestinationServiceID`);
  optStr(p['LocalServiceAddress'], `${field}.LocalServiceAddress`);
  optPort(p['LocalServicePort'], `${field}.LocalServicePort`);
  optObj(p['Config'], `${field}.Config`);
  const mg = optObj(p['MeshGateway'], `${field}.MeshGateway`);
  if (mg) optOneOf(mg['Mode'], `${field}.MeshGateway.Mode`, ['', 'none', 'local', 'remote'] as const);
  const ups = p['Upstreams'];
  if (ups !== undefined && ups !== null) {
    if (!Array.isArray(ups)) throw bad(`${field}.Upstreams`, 'expected a list');
    ups.forEach((u, i) => {
      const f = `${field}.Upstreams[${i}]`;
      const o = obj(u, f);
      name('service', o['DestinationName'], `${f}.DestinationName`);
      if (o['Datacenter'] !== undefined && o['Datacenter'] !== '')
        name('datacenter', o['Datacenter'], `${f}.Datacenter`);
      optPort(o['LocalBindPort'], `${f}.LocalBindPort`);
      optStr(o['LocalBindAddress'], `${f}.LocalBindAddress`);
      optOneOf(o['DestinationType'], `${f}.DestinationType`, ['', 'service', 'prepared_query'] as const);
    });
  }
  return p;
}

/** Parse a service body (catalog `Service` or agent register); names are checked against SNI rules. */
export function parseService(b: Json, field: string, nameKey: 'Service' | 'Name'): ServiceValue {
  const svcName = name('service', b[nameKey], `${field}${nameKey}`);
  const kind = kindOf(b['Kind'], `${field}Kind`);
  const id = optStr(b['ID'], `${field}ID`) || svcName;
  if (id.includes('/')) throw bad(`${field}ID`, `must not contain "/", got "${id}"`);
  const out: ServiceValue = {
    ID: id,
    Service: svcName,
    Tags: optStrList(b['Tags'], `${field}Tags`) ?? [],
    Address: optStr(b['Address'], `${field}Address`) ?? '',
    TaggedAddresses: taggedServiceAddresses(b['TaggedAddresses'], `${field}TaggedAddresses`),
    Meta: optStrMap(b['Meta'], `${field}Meta`) ?? {},
    Port: optPort(b['Port'], `${field}Port`) ?? 0,
    Kind: kind,
    Weights: { Passing: 1, Warning: 1 },
    EnableTagOverride: optBool(b['EnableTagOverride'], `${field}EnableTagOverride`) ?? false,
  };
  const proxy = parseProxy(b['Proxy'], `${field}Proxy`, kind);
  if (proxy) out.Proxy = proxy;
  const connect = optObj(b['Connect'], `${field}Connect`);
  if (connect) {
    const c: Json = {};
    if (connect['Native'] !== undefined) c['Native'] = optBool(connect['Native'], `${field}Connect.Native`);
    if (Object.keys(c).length > 0) out.Connect = c;
  }
  return out;
}

/** Parse one check definition (agent or catalog form). */
export function parseCheck(
  b: Json,
  field: string,
  defaults: { node: string; checkId: string; name: string; service?: ServiceValue },
): CheckValue {
  const def: CheckDefinition = {};
  const tcp = optStr(b['TCP'], `${field}TCP`);
  const http = optStr(b['HTTP'], `${field}HTTP`);
  const ttl = optStr(b['TTL'], `${field}TTL`);
  const alias = optStr(b['AliasService'], `${field}AliasService`);
  const kinds = [tcp, http, ttl, alias].filter((x) => x !== undefined && x !== '').length;
  if (kinds > 1) throw bad(field || 'Check', 'give only one of TCP, HTTP, TTL, AliasService');
  let type = '';
  if (tcp) {
    def.TCP = tcp;
    type = 'tcp';
  } else if (http) {
    try {
      const u = new URL(http);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      throw bad(`${field}HTTP`, `expected an http:// or https:// URL, got "${http}"`);
    }
    def.HTTP = http;
    const m = optStr(b['Method'], `${field}Method`);
    if (m) def.Method = m;
    if (b['TLSSkipVerify'] !== undefined)
      def.TLSSkipVerify = optBool(b['TLSSkipVerify'], `${field}TLSSkipVerify`) ?? false;
    type = 'http';
  } else if (ttl) {
    optDuration(ttl, `${field}TTL`);
    def.TTL = ttl;
    type = 'ttl';
  } else if (alias) {
    def.AliasService = alias;
    type = 'alias';
  }
  if (type === 'tcp' || type === 'http') {
    const iv = optDuration(b['Interval'], `${field}Interval`);
    if (iv === undefined)
      throw bad(`${field}Interval`, `a ${type.toUpperCase()} check needs an Interval like "10s"`);
    if (iv < 100) throw bad(`${field}Interval`, 'must be at least 100ms');
    def.Interval = b['Interval'] as string;
    if (optDuration(b['Timeout'], `${field}Timeout`) !== undefined) def.Timeout = b['Timeout'] as string;
  }
  if (
    optDuration(b['DeregisterCriticalServiceAfter'], `${field}DeregisterCriticalServiceAfter`) !== undefined
  )
    def.DeregisterCriticalServiceAfter = b['DeregisterCriticalServiceAfter'] as string;
  const status =
    optOneOf(b['Status'], `${field}Status`, ['passing', 'warning', 'critical'] as const) ??
    (type === '' ? 'passing' : 'critical');
  const checkId = optStr(b['CheckID'] ?? b['ID'], `${field}CheckID`) || defaults.checkId;
  if (checkId.includes('/')) throw bad(`${field}CheckID`, `must not contain "/", got "${checkId}"`);
  const svc = defaults.service;
  return {
    Node: defaults.node,
    CheckID: checkId,
    Name: optStr(b['Name'], `${field}Name`) || defaults.name,
    Status: status,
    Notes: optStr(b['Notes'], `${field}Notes`) ?? '',
    Output: optStr(b['Output'], `${field}Output`) ?? '',
    ServiceID: svc?.ID ?? (optStr(b['ServiceID'], `${field}ServiceID`) || ''),
    ServiceName: svc?.Service ?? '',
    ServiceTags: svc?.Tags ?? [],
    Type: type,
    Definition: def,
  };
}

// --- writes -----------------------------------------------------------------------------------

export function nodeOps(n: NodeValue): WriteOp[] {
  return [{ table: T_NODES, key: n.Node, op: 'put', value: n }];
}

export function serviceOps(node: string, s: ServiceValue): WriteOp[] {
  const ops: WriteOp[] = [
    { table: T_SERVICES, key: svcKey(node, s.ID), op: 'put', value: s, secondary: s.Service },
  ];
  const dest = s.Kind === 'connect-proxy' ? (s.Proxy?.['DestinationServiceName'] as string) : undefined;
  const native = s.Connect?.['Native'] === true ? s.Service : undefined;
  const target = dest ?? native;
  if (target)
    ops.push({
      table: T_CONNECT,
      key: svcKey(node, s.ID),
      op: 'put',
      value: { Node: node, ID: s.ID },
      secondary: target,
    });
  else ops.push({ table: T_CONNECT, key: svcKey(node, s.ID), op: 'delete' });
  return ops;
}

export function checkOps(c: CheckValue): WriteOp[] {
  return [
    { table: T_CHECKS, key: checkKey(c.Node, c.CheckID), op: 'put', value: c, secondary: c.ServiceName },
  ];
}

export function deregisterServiceOps(store: Store, node: string, serviceId: string): WriteOp[] {
  const ops: WriteOp[] = [
    { table: T_SERVICES, key: svcKey(node, serviceId), op: 'delete' },
    { table: T_CONNECT, key: svcKey(node, serviceId), op: 'delete' },
  ];
  for (const c of store.list<CheckValue>(T_CHECKS, { prefix: `${node}/` }))
    if (c.value.ServiceID === serviceId) ops.push({ table: T_CHECKS, key: c.key, op: 'delete' });
  return ops;
}

export function deregisterNodeOps(store: Store, node: string): WriteOp[] {
  const ops: WriteOp[] = [{ table: T_NODES, key: node, op: 'delete' }];
  for (const s of store.list(T_SERVICES, { prefix: `${node}/` })) {
    ops.push({ table: T_SERVICES, key: s.key, op: 'delete' });
    ops.push({ table: T_CONNECT, key: s.key, op: 'delete' });
  }
  for (const c of store.list(T_CHECKS, { prefix: `${node}/` }))
    ops.push({ table: T_CHECKS, key: c.key, op: 'delete' });
  return ops;
}

/** PUT /v1/catalog/register. */
export function catalogRegisterOps(store: Store, body: unknown, dc: string): WriteOp[] {
  const b = obj(body, 'body');
  const node = name('node', b['Node'], 'Node');
  if (b['Datacenter'] !== undefined && b['Datacenter'] !== '' && b['Datacenter'] !== dc)
    throw bad('Datacenter', `this server serves "${dc}", got "${String(b['Datacenter'])}"`);
  const ops: WriteOp[] = [];
  const existing = store.get<NodeValue>(T_NODES, node)?.value;
  if (b['SkipNodeUpdate'] !== true || !existing) {
    const tagged = optStrMap(b['TaggedAddresses'], 'TaggedAddresses') ?? {};
    const address = str(b['Address'] ?? existing?.Address, 'Address');
    ops.push(
      ...nodeOps({
        ID: optStr(b['ID'], 'ID') ?? existing?.ID ?? '',
        Node: node,
        Address: address,
        Datacenter: dc,
        TaggedAddresses: { lan: address, ...tagged },
        Meta: optStrMap(b['NodeMeta'], 'NodeMeta') ?? existing?.Meta ?? {},
      }),
    );
  }
  let svc: ServiceValue | undefined;
  if (b['Service'] !== undefined && b['Service'] !== null) {
    svc = parseService(obj(b['Service'], 'Service'), 'Service.', 'Service');
    ops.push(...serviceOps(node, svc));
  }
  const checks: unknown[] = [];
  if (b['Check'] !== undefined && b['Check'] !== null) checks.push(b['Check']);
  if (Array.isArray(b['Checks'])) checks.push(...(b['Checks'] as unknown[]));
  checks.forEach((raw, i) => {
    const f = b['Check'] !== undefined && i === 0 ? 'Check.' : `Checks[${i}].`;
    const c = obj(raw, f.slice(0, -1));
    const sid = optStr(c['ServiceID'], `${f}ServiceID`);
    let service: ServiceValue | undefined;
    if (sid) {
      service = svc?.ID === sid ? svc : store.get<ServiceValue>(T_SERVICES, svcKey(node, sid))?.value;
      if (!service) throw bad(`${f}ServiceID`, `no service "${sid}" on node "${node}"`);
    }
    ops.push(
      ...checkOps(
        parseCheck(c, f, {
          node,
          checkId: optStr(c['CheckID'], `${f}CheckID`) ?? '',
          name: optStr(c['Name'], `${f}Name`) ?? '',
          ...(service ? { service } : {}),
        }),
      ),
    );
  });
  return ops;
}

/** PUT /v1/catalog/deregister. */
export function catalogDeregisterOps(store: Store, body: unknown): WriteOp[] {
  const b = obj(body, 'body');
  onlyKeys(b, '', ['Node', 'Datacenter', 'ServiceID', 'CheckID', 'Namespace', 'Partition']);
  const node = name('node', b['Node'], 'Node');
  const sid = optStr(b['ServiceID'], 'ServiceID');
  const cid = optStr(b['CheckID'], 'CheckID');
  if (sid) return deregisterServiceOps(store, node, sid);
  if (cid) return [{ table: T_CHECKS, key: checkKey(node, cid), op: 'delete' }];
  return deregisterNodeOps(store, node);
}

// --- reads ------------------------------------------------------------------------------------

type Indexed<T> = T & { CreateIndex: number; ModifyIndex: number };
const withIdx = <T>(r: StoredRow<T>): Indexed<T> => ({
  ...r.value,
  CreateIndex: r.createIndex,
  ModifyIndex: r.modifyIndex,
});

export interface HealthEntry {
  Node: Indexed<NodeValue>;
  Service: Indexed<ServiceValue>;
  Checks: Indexed<CheckValue>[];
}

export class CatalogReader {
  constructor(private readonly store: Store) {}

  node(n: string): StoredRow<NodeValue> | undefined {
    return this.store.get<NodeValue>(T_NODES, n);
  }

  nodes(): Indexed<NodeValue>[] {
    return this.store.list<NodeValue>(T_NODES).map(withIdx);
  }

  servicesMap(): Record<string, string[]> {
    const out: Record<string, Set<string>> = {};
    for (const r of this.store.list<ServiceValue>(T_SERVICES)) {
      const set = (out[r.value.Service] ??= new Set());
      for (const t of r.value.Tags) set.add(t);
    }
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].sort()]));
  }

  instances(service: string, connect: boolean): StoredRow<ServiceValue>[] {
    if (!connect) return this.store.list<ServiceValue>(T_SERVICES, { secondary: service });
    const out: StoredRow<ServiceValue>[] = [];
    for (const c of this.store.list(T_CONNECT, { secondary: service })) {
      const r = this.store.get<ServiceValue>(T_SERVICES, c.key);
      if (r) out.push(r);
    }
    return out;
  }

  static instanceKeys(service: string, connect: boolean): WatchKey[] {
    return connect
      ? [{ table: T_CONNECT, secondary: service }, { table: T_SERVICES }, { table: T_NODES }]
      : [{ table: T_SERVICES, secondary: service }, { table: T_NODES }];
  }

  static healthKeys(service: string, connect: boolean): WatchKey[] {
    // Service checks carry the service name as their secondary key; node checks carry ''. Proxies
    // have names of their own, so a connect read depends on every check.
    const checks: WatchKey[] = connect
      ? [{ table: T_CHECKS }]
      : [
          { table: T_CHECKS, secondary: service },
          { table: T_CHECKS, secondary: '' },
        ];
    return [...CatalogReader.instanceKeys(service, connect), ...checks];
  }

  /** GET /v1/catalog/service/:s shape. */
  catalogService(service: string, connect: boolean, tags: readonly string[]): Json[] {
    const out: Json[] = [];
    for (const r of this.instances(service, connect)) {
      const s = r.value;
      if (!tags.every((t) => s.Tags.includes(t))) continue;
      const nodeName = r.key.slice(0, r.key.length - s.ID.length - 1);
      const n = this.node(nodeName)?.value;
      if (!n) continue;
      out.push({
        ID: n.ID,
        Node: n.Node,
        Address: n.Address,
        Datacenter: n.Datacenter,
        TaggedAddresses: n.TaggedAddresses,
        NodeMeta: n.Meta,
        ServiceKind: s.Kind,
        ServiceID: s.ID,
        ServiceName: s.Service,
        ServiceTags: s.Tags,
        ServiceAddress: s.Address,
        ServiceTaggedAddresses: s.TaggedAddresses,
        ServiceWeights: s.Weights,
        ServiceMeta: s.Meta,
        ServicePort: s.Port,
        ServiceEnableTagOverride: s.EnableTagOverride,
        ServiceProxy: s.Proxy ?? {},
        ServiceConnect: s.Connect ?? {},
        CreateIndex: r.createIndex,
        ModifyIndex: r.modifyIndex,
      });
    }
    return out;
  }

  /** GET /v1/health/service/:s shape. */
  health(
    service: string,
    connect: boolean,
    opts: { passing: boolean; tags: readonly string[] },
  ): HealthEntry[] {
    const out: HealthEntry[] = [];
    // Checks by service name (one indexed lookup per distinct name) and node-level checks (secondary
    // ''), instead of scanning every check of every node an instance lives on.
    const byService = new Map<string, Map<string, Indexed<CheckValue>[]>>();
    const serviceChecks = (name: string): Map<string, Indexed<CheckValue>[]> => {
      let m = byService.get(name);
      if (!m) {
        m = new Map();
        for (const c of this.store.list<CheckValue>(T_CHECKS, { secondary: name })) {
          const k = `${c.value.Node}/${c.value.ServiceID}`;
          const list = m.get(k) ?? [];
          list.push(withIdx(c));
          m.set(k, list);
        }
        byService.set(name, m);
      }
      return m;
    };
    let nodeChecks: Map<string, Indexed<CheckValue>[]> | undefined;
    const nodeLevel = (node: string): Indexed<CheckValue>[] => {
      if (!nodeChecks) {
        nodeChecks = new Map();
        for (const c of this.store.list<CheckValue>(T_CHECKS, { secondary: '' })) {
          const list = nodeChecks.get(c.value.Node) ?? [];
          list.push(withIdx(c));
          nodeChecks.set(c.value.Node, list);
        }
      }
      return nodeChecks.get(node) ?? [];
    };
    const nodes = new Map<string, StoredRow<NodeValue> | undefined>();
    for (const r of this.instances(service, connect)) {
      const s = r.value;
      if (!opts.tags.every((t) => s.Tags.includes(t))) continue;
      const nodeName = r.key.slice(0, r.key.length - s.ID.length - 1);
      if (!nodes.has(nodeName)) nodes.set(nodeName, this.node(nodeName));
      const n = nodes.get(nodeName);
      if (!n) continue;
      const checks = [...nodeLevel(nodeName), ...(serviceChecks(s.Service).get(`${nodeName}/${s.ID}`) ?? [])];
      if (opts.passing && checks.some((c) => c.Status !== 'passing')) continue;
      out.push({ Node: withIdx(n), Service: withIdx(r), Checks: checks });
    }
    return out;
  }

  nodeServices(
    nodeName: string,
  ): { Node: Indexed<NodeValue>; Services: Record<string, Indexed<ServiceValue>> } | undefined {
    const n = this.node(nodeName);
    if (!n) return undefined;
    const services: Record<string, Indexed<ServiceValue>> = {};
    for (const r of this.store.list<ServiceValue>(T_SERVICES, { prefix: `${nodeName}/` }))
      services[r.value.ID] = withIdx(r);
    return { Node: withIdx(n), Services: services };
  }

  checksOf(filter: (c: CheckValue) => boolean): Indexed<CheckValue>[] {
    return this.store
      .list<CheckValue>(T_CHECKS)
      .filter((r) => filter(r.value))
      .map(withIdx);
  }

  nodeChecks(nodeName: string): Indexed<CheckValue>[] {
    return this.store.list<CheckValue>(T_CHECKS, { prefix: `${nodeName}/` }).map(withIdx);
  }

  service(nodeName: string, id: string): StoredRow<ServiceValue> | undefined {
    return this.store.get<ServiceValue>(T_SERVICES, svcKey(nodeName, id));
  }

  check(nodeName: string, id: string): StoredRow<CheckValue> | undefined {
    return this.store.get<CheckValue>(T_CHECKS, checkKey(nodeName, id));
  }

  nodeServiceList(nodeName: string): StoredRow<ServiceValue>[] {
    return this.store.list<ServiceValue>(T_SERVICES, { prefix: `${nodeName}/` });
  }
}
