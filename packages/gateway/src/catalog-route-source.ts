// CatalogRouteSource: the live routing table, built from the local server's HTTP API with Consul's
// blocking queries. It owns four kinds of watch and turns their answers into one RouteTable:
//   /v1/connect/ca/roots                        → the trust domain (TrustDomain)
//   /v1/catalog/services + /v1/health/connect/<svc>?passing
//                                               → local services' healthy sidecar listeners
//   /v1/internal/federation-states/mesh-gateways → remote DCs' gateways (WAN addresses)
//   /v1/catalog/service/consul                  → local servers' federation ports
// It only reads; it never logs tokens (the ApiClient holds the token) and never throws from a watch.
// A table is emitted once every watch has answered once, then on every change.

import type { ApiClient } from '@meshfed/client';
import { errorMessage, type HostPort, type Logger } from '@meshfed/core';
import type { RouteSource } from './route-source.js';
import { RouteTable, type RouteSpec } from './routes.js';

export interface CatalogRouteSourceOptions {
  datacenter: string;
  /** Server domain for server SNI names; Consul's default is `consul`. */
  domain?: string;
  /** Carry server-to-server traffic (server SNI names). Default true. */
  exposeServers?: boolean;
  /** Blocking query wait. Default 5m. */
  wait?: string;
  /** Service names never routed to (the gateway's own service, for instance). */
  ignoreServices?: readonly string[];
}

export interface CatalogRouteSourceDeps {
  client: ApiClient;
  logger: Logger;
}

// Consul response shapes (only the fields used).
interface AddrPort {
  Address?: string;
  Port?: number;
}
interface HealthEntry {
  Node?: { Node?: string; Address?: string; TaggedAddresses?: Record<string, string> | null };
  Service?: {
    ID?: string;
    Service?: string;
    Kind?: string;
    Address?: string;
    Port?: number;
    Namespace?: string;
    TaggedAddresses?: Record<string, AddrPort> | null;
  };
  Checks?: { Status?: string }[];
}
interface CatalogServiceEntry {
  Node?: string;
  Address?: string;
  ServiceAddress?: string;
  ServicePort?: number;
}

export class CatalogRouteSource implements RouteSource {
  private readonly controller = new AbortController();
  private readonly domain: string;
  private trustDomain: string | undefined;
  private gateways: Record<string, HealthEntry[]> | undefined;
  private servers: CatalogServiceEntry[] | undefined;
  private serviceNames: string[] | undefined;
  private readonly instances = new Map<string, HealthEntry[] | undefined>();
  private readonly serviceWatches = new Map<string, AbortController>();
  private readonly running: Promise<void>[] = [];
  private onTable: ((t: RouteTable) => void) | undefined;

  constructor(
    private readonly options: CatalogRouteSourceOptions,
    private readonly deps: CatalogRouteSourceDeps,
  ) {
    this.domain = options.domain ?? 'consul';
  }

  async start(onTable: (table: RouteTable) => void): Promise<void> {
    this.onTable = onTable;
    this.watch<{ TrustDomain?: string }>('/v1/connect/ca/roots', {}, (body) => {
      this.trustDomain = body.TrustDomain?.toLowerCase() || undefined;
    });
    this.watch<Record<string, HealthEntry[]>>('/v1/internal/federation-states/mesh-gateways', {}, (body) => {
      this.gateways = body ?? {};
    });
    this.watch<CatalogServiceEntry[]>('/v1/catalog/service/consul', {}, (body) => {
      this.servers = body ?? [];
    });
    this.watch<Record<string, string[]>>('/v1/catalog/services', {}, (body) =>
      this.setServices(Object.keys(body ?? {})),
    );
  }

  async close(): Promise<void> {
    this.controller.abort();
    for (const c of this.serviceWatches.values()) c.abort();
    await Promise.allSettled(this.running);
  }

  private watch<T>(
    path: string,
    query: Record<string, string>,
    apply: (body: T) => void,
    signal = this.controller.signal,
  ): void {
    const p = this.deps.client.watch<T>(
      path,
      (body) => {
        apply(body);
        this.emit();
      },
      {
        signal,
        wait: this.options.wait ?? '5m',
        query,
        onError: (err, attempt) => {
          const fields = { path, attempt, error: errorMessage(err) };
          if (attempt === 0) this.deps.logger.warn(fields, 'route watch failed, retrying');
          else this.deps.logger.debug(fields, 'route watch failed, retrying');
        },
      },
    );
    this.running.push(p);
  }

  private setServices(names: string[]): void {
    const ignore = new Set(['consul', ...(this.options.ignoreServices ?? [])]);
    const wanted = names.filter((n) => !ignore.has(n) && !n.endsWith('-sidecar-proxy'));
    this.serviceNames = wanted;
    const keep = new Set(wanted);
    for (const [name, ctl] of this.serviceWatches) {
      if (keep.has(name)) continue;
      ctl.abort();
      this.serviceWatches.delete(name);
      this.instances.delete(name);
    }
    for (const name of wanted) {
      if (this.serviceWatches.has(name)) continue;
      const ctl = new AbortController();
      this.controller.signal.addEventListener('abort', () => ctl.abort(), { once: true });
      this.serviceWatches.set(name, ctl);
      this.instances.set(name, undefined);
      this.watch<HealthEntry[]>(
        `/v1/health/connect/${encodeURIComponent(name)}`,
        { passing: '1' },
        (body) => {
          if (this.serviceWatches.get(name) === ctl) this.instances.set(name, body ?? []);
        },
        ctl.signal,
      );
    }
  }

  /** Whether every watch has answered at least once. */
  private complete(): boolean {
    if (this.trustDomain === undefined || !this.gateways || !this.servers || !this.serviceNames) return false;
    for (const v of this.instances.values()) if (v === undefined) return false;
    return true;
  }

  private emit(): void {
    if (this.controller.signal.aborted || !this.complete()) return;
    this.onTable?.(this.build());
  }

  /** The table for the current state (exposed for tests and `routes`). */
  build(): RouteTable {
    const td = this.trustDomain!;
    const dc = this.options.datacenter.toLowerCase();
    const dom = this.domain;
    const specs: RouteSpec[] = [];
    // local service instances: <svc>.<ns>.<dc>.internal.<td> → healthy sidecars' public listeners
    for (const [name, entries] of this.instances) {
      const byNs = new Map<string, HostPort[]>();
      for (const e of entries ?? []) {
        const ep = instanceAddress(e);
        if (!ep || !passing(e)) continue;
        const ns = (e.Service?.Namespace || 'default').toLowerCase();
        (byNs.get(ns) ?? byNs.set(ns, []).get(ns)!).push(ep);
      }
      for (const [ns, endpoints] of byNs)
        specs.push({
          match: `${name.toLowerCase()}.${ns}.${dc}.internal.${td}`,
          class: 'local_service',
          datacenter: dc,
          endpoints,
        });
    }
    // remote DCs: their gateways' WAN addresses
    for (const [remote, entries] of Object.entries(this.gateways!)) {
      const rdc = remote.toLowerCase();
      if (rdc === dc) continue;
      const endpoints = (entries ?? [])
        .filter(passing)
        .map(wanAddress)
        .filter((x): x is HostPort => x !== undefined);
      if (endpoints.length === 0) continue;
      specs.push({ match: `${rdc}.internal.${td}`, class: 'remote_dc', datacenter: rdc, endpoints });
      specs.push({ match: `*.${rdc}.internal.${td}`, class: 'remote_dc', datacenter: rdc, endpoints });
      specs.push({ match: `*.${rdc}.internal-v1.${td}`, class: 'remote_dc', datacenter: rdc, endpoints });
      if (this.options.exposeServers !== false) {
        specs.push({ match: `server.${rdc}.${dom}`, class: 'remote_server', datacenter: rdc, endpoints });
        specs.push({ match: `*.server.${rdc}.${dom}`, class: 'remote_server', datacenter: rdc, endpoints });
      }
    }
    // local servers: <node>.server.<dc>.<domain> → that server's federation port
    if (this.options.exposeServers !== false) {
      const all: HostPort[] = [];
      for (const s of this.servers!) {
        const host = s.ServiceAddress || s.Address;
        if (!s.Node || !host || !s.ServicePort) continue;
        const ep = { host, port: s.ServicePort };
        all.push(ep);
        specs.push({
          match: `${s.Node.toLowerCase()}.server.${dc}.${dom}`,
          class: 'local_server',
          datacenter: dc,
          endpoints: [ep],
        });
      }
      if (all.length > 0)
        specs.push({ match: `server.${dc}.${dom}`, class: 'local_server', datacenter: dc, endpoints: all });
    }
    this.deps.logger.debug({ routes: specs.length }, 'routing table built from the catalog');
    return new RouteTable(specs, td);
  }
}

function passing(e: HealthEntry): boolean {
  return (e.Checks ?? []).every((c) => c.Status === undefined || c.Status === 'passing');
}

function instanceAddress(e: HealthEntry): HostPort | undefined {
  const host = e.Service?.Address || e.Node?.Address;
  const port = e.Service?.Port;
  return host && port ? { host, port } : undefined;
}

/** A gateway's WAN address: its service's `wan` tagged address, else the node's, else its address. */
function wanAddress(e: HealthEntry): HostPort | undefined {
  const wan = e.Service?.TaggedAddresses?.['wan'];
  if (wan?.Address && wan.Port) return { host: wan.Address, port: wan.Port };
  const port = e.Service?.Port;
  const host = e.Node?.TaggedAddresses?.['wan'] || e.Service?.Address || e.Node?.Address;
  return host && port ? { host, port } : undefined;
}
