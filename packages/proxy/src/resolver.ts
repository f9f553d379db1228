// Target choice for an upstream at L4, as Consul's compiled discovery chain does it:
//   service-resolver Redirect (one hop) → DefaultSubset → [primary, ...Failover targets in order],
//   each target with its own SNI (Consul issue 6161: SNI is per target, not per endpoint),
//   instances filtered by health (critical never; warning unless OnlyPassing) and the subset Filter,
//   and dialled directly or through a mesh gateway by the mode precedence
//   upstream > proxy registration > service-defaults > proxy-defaults.
// A target with no healthy instance — or whose DC cannot be read — is skipped for new connections.

import { parseDuration, serviceSni, type Logger } from '@meshfed/core';
import { compileFilter } from './bexpr.js';
import type {
  AgentService,
  ConfigEntry,
  HealthEntry,
  MeshGatewayMode,
  UpstreamConfig,
} from './data-sources.js';

export interface Endpoint {
  address: string;
  port: number;
}

export interface ResolvedTarget {
  service: string;
  namespace: string;
  datacenter: string;
  subset: string | undefined;
  sni: string;
  /** How it is dialled: direct to sidecars, or via the local / the destination DC's gateways. */
  via: 'direct' | 'local-gateway' | 'remote-gateway';
  endpoints: Endpoint[];
  healthyInstances: number;
  connectTimeoutMs: number;
}

export interface ResolverSources {
  localDatacenter: string;
  trustDomain(): string;
  registration(): AgentService | undefined;
  config(
    kind: 'service-resolver' | 'service-defaults' | 'proxy-defaults',
    name: string,
  ): Promise<ConfigEntry | undefined>;
  health(service: string, datacenter: string): Promise<HealthEntry[] | undefined>;
  gateways(datacenter: string, local: boolean): Promise<HealthEntry[] | undefined>;
}

export const defaultConnectTimeoutMs = 5000;

interface ChainTarget {
  service: string;
  datacenter: string;
  subset: string | undefined;
}

const filterCache = new Map<string, (v: unknown) => boolean>();
function filterFor(expr: string): (v: unknown) => boolean {
  let f = filterCache.get(expr);
  if (!f) {
    f = compileFilter(expr);
    filterCache.set(expr, f);
  }
  return f;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}
function strOf(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
function modeOf(entry: unknown): MeshGatewayMode {
  const m = strOf(obj(obj(entry)?.['MeshGateway'])?.['Mode']);
  return m === 'local' || m === 'remote' || m === 'none' ? m : '';
}

export class TargetResolver {
  constructor(
    private readonly src: ResolverSources,
    private readonly logger: Logger,
  ) {}

  async gatewayMode(up: UpstreamConfig, service: string): Promise<MeshGatewayMode> {
    const fromUp = up.MeshGateway?.Mode;
    if (fromUp) return fromUp;
    const fromReg = this.src.registration()?.Proxy?.MeshGateway?.Mode;
    if (fromReg) return fromReg;
    const sd = modeOf(await this.src.config('service-defaults', service));
    if (sd) return sd;
    const pd = modeOf(await this.src.config('proxy-defaults', 'global'));
    return pd || 'none';
  }

  /** The ordered targets of an upstream, each resolved to endpoints. */
  async resolve(up: UpstreamConfig): Promise<ResolvedTarget[]> {
    const local = this.src.localDatacenter;
    let service = up.DestinationName;
    let datacenter = up.Datacenter || local;
    let subset: string | undefined;
    let resolver = obj(await this.src.config('service-resolver', service));
    const redirect = obj(resolver?.['Redirect']);
    if (redirect) {
      service = strOf(redirect['Service']) ?? service;
      datacenter = strOf(redirect['Datacenter']) ?? datacenter;
      subset = strOf(redirect['ServiceSubset']);
      resolver = obj(await this.src.config('service-resolver', service));
    }
    subset ??= strOf(resolver?.['DefaultSubset']);
    let connectTimeoutMs = up.ConnectTimeoutMs ?? defaultConnectTimeoutMs;
    const ct = strOf(resolver?.['ConnectTimeout']);
    if (ct) {
      const d = parseDuration(ct);
      if (d.ok && d.value > 0) connectTimeoutMs = d.value;
    }

    const chain: ChainTarget[] = [{ service, datacenter, subset }];
    const failovers = obj(resolver?.['Failover']);
    const fo = obj(failovers?.[subset ?? '*']) ?? obj(failovers?.['*']);
    if (fo) {
      const targets = fo['Targets'];
      const dcs = fo['Datacenters'];
      if (Array.isArray(targets)) {
        for (const t of targets) {
          const o = obj(t);
          if (!o) continue;
          const svc = strOf(o['Service']) ?? service;
          chain.push({
            service: svc,
            datacenter: strOf(o['Datacenter']) ?? datacenter,
            subset: strOf(o['ServiceSubset']) ?? (svc === service ? subset : undefined),
          });
        }
      } else if (Array.isArray(dcs)) {
        const svc = strOf(fo['Service']) ?? service;
        for (const d of dcs)
          if (typeof d === 'string' && d) chain.push({ service: svc, datacenter: d, subset });
      }
    }

    const out: ResolvedTarget[] = [];
    for (const t of chain) out.push(await this.endpoints(up, t, connectTimeoutMs));
    return out;
  }

  private async instances(t: ChainTarget): Promise<HealthEntry[]> {
    const entries = await this.src.health(t.service, t.datacenter);
    if (!entries) return [];
    const res = obj(await this.src.config('service-resolver', t.service));
    let filter: ((v: unknown) => boolean) | undefined;
    let onlyPassing = false;
    if (t.subset) {
      const def = obj(obj(res?.['Subsets'])?.[t.subset]);
      if (!def) {
        this.logger.warn({ service: t.service, subset: t.subset }, 'service-resolver has no such subset');
        return [];
      }
      onlyPassing = def['OnlyPassing'] === true;
      const expr = strOf(def['Filter']);
      if (expr) {
        try {
          filter = filterFor(expr);
        } catch (err) {
          this.logger.warn(
            { service: t.service, subset: t.subset, err: String(err) },
            'subset filter is invalid',
          );
          return [];
        }
      }
    }
    return entries.filter((e) => {
      const checks = e.Checks ?? [];
      if (checks.some((c) => c.Status === 'critical')) return false;
      if (onlyPassing && checks.some((c) => c.Status !== 'passing')) return false;
      return filter ? filter(e) : true;
    });
  }

  private async endpoints(
    up: UpstreamConfig,
    t: ChainTarget,
    connectTimeoutMs: number,
  ): Promise<ResolvedTarget> {
    const local = this.src.localDatacenter;
    const namespace = up.DestinationNamespace || 'default';
    const sniTarget: Parameters<typeof serviceSni>[0] = {
      service: t.service,
      namespace,
      datacenter: t.datacenter,
    };
    if (t.subset) sniTarget.subset = t.subset;
    const base = {
      service: t.service,
      namespace,
      datacenter: t.datacenter,
      subset: t.subset,
      sni: serviceSni(sniTarget, this.src.trustDomain()),
      connectTimeoutMs,
    };
    const instances = await this.instances(t);
    const direct = instances.map((e) => ({
      address: e.Service.Address || e.Node.Address,
      port: e.Service.Port,
    }));
    if (t.datacenter === local)
      return { ...base, via: 'direct', endpoints: direct, healthyInstances: instances.length };
    const mode = await this.gatewayMode(up, t.service);
    if (mode === 'local' || mode === 'remote') {
      const isLocal = mode === 'local';
      const gws = (await this.src.gateways(isLocal ? local : t.datacenter, isLocal)) ?? [];
      const tag = isLocal ? 'lan' : 'wan';
      const endpoints = gws
        .filter((g) => !(g.Checks ?? []).some((c) => c.Status === 'critical'))
        .map((g) => {
          const ta = g.Service.TaggedAddresses?.[tag];
          return ta
            ? { address: ta.Address, port: ta.Port }
            : { address: g.Service.Address || g.Node.Address, port: g.Service.Port };
        });
      return {
        ...base,
        via: isLocal ? 'local-gateway' : 'remote-gateway',
        endpoints,
        healthyInstances: instances.length,
      };
    }
    return { ...base, via: 'direct', endpoints: direct, healthyInstances: instances.length };
  }
}
