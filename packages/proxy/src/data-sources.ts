// What the sidecar reads from its DC's server, declared here as the narrow interface it consumes
// (Consul's proxycfg DataSources idea), in Consul's JSON shapes. ApiDataSources implements it over
// the HTTP API with blocking queries; tests serve the same shapes from an in-test HTTP server.

import type { ApiClient } from '@meshfed/client';
import { ApiError, type QueryMeta } from '@meshfed/client';
import {
  backoff,
  MeshError,
  sleep,
  systemClock,
  type CaRootsResponse,
  type Clock,
  type IssuedLeaf,
  type IntentionRule,
  type Logger,
} from '@meshfed/core';

export type MeshGatewayMode = 'local' | 'remote' | 'none' | '';

export interface UpstreamConfig {
  DestinationName: string;
  DestinationNamespace?: string;
  DestinationType?: string;
  Datacenter?: string;
  LocalBindAddress?: string;
  LocalBindPort: number;
  MeshGateway?: { Mode?: MeshGatewayMode };
  ConnectTimeoutMs?: number;
}

/** /v1/agent/service/<id> for a connect-proxy. */
export interface AgentService {
  ID: string;
  Service: string;
  Kind?: string;
  Address?: string;
  Port: number;
  Tags?: string[];
  Meta?: Record<string, string>;
  Proxy?: {
    DestinationServiceName: string;
    DestinationServiceID?: string;
    LocalServiceAddress?: string;
    LocalServicePort?: number;
    Upstreams?: UpstreamConfig[];
    MeshGateway?: { Mode?: MeshGatewayMode };
  };
}

/** /v1/agent/connect/ca/leaf/<service> */
export type LeafCert = IssuedLeaf;

/** /v1/agent/connect/ca/roots */
export type CaRoots = CaRootsResponse;

/** One element of /v1/health/service|connect/<svc>. */
export interface HealthEntry {
  Node: { Node: string; Address: string; Datacenter?: string };
  Service: {
    ID: string;
    Service: string;
    Kind?: string;
    Address?: string;
    Port: number;
    Tags?: string[] | null;
    Meta?: Record<string, string> | null;
    TaggedAddresses?: Record<string, { Address: string; Port: number }> | null;
    Proxy?: { DestinationServiceName?: string } | null;
  };
  Checks?: { Status: string; CheckID?: string }[] | null;
}

/** An intention as /v1/connect/intentions/match returns it. */
export interface IntentionJson {
  ID?: string;
  SourceNS?: string;
  SourceName: string;
  DestinationNS?: string;
  DestinationName: string;
  Action?: 'allow' | 'deny' | '';
  Permissions?: unknown[] | null;
}

export type ConfigEntryKind = 'service-resolver' | 'service-defaults' | 'proxy-defaults';
export type ConfigEntry = Record<string, unknown>;

/** `undefined` means "could not be read" (the DC or server is unreachable), not "empty". */
export type Listener<T> = (value: T) => void;

export interface ProxyDataSources {
  /** The DC of the local server/agent (/v1/agent/self Config.Datacenter). */
  localDatacenter(signal: AbortSignal): Promise<string>;
  /** The connect-proxy instance whose DestinationServiceID is `serviceId` (`--sidecar-for`). */
  findSidecarFor(serviceId: string, signal: AbortSignal): Promise<AgentService>;
  watchRegistration(proxyId: string, on: Listener<AgentService | undefined>, signal: AbortSignal): void;
  watchLeaf(service: string, on: Listener<LeafCert>, signal: AbortSignal): void;
  /** One non-blocking read of the leaf (renewal and root changes). */
  fetchLeaf(service: string, signal: AbortSignal): Promise<LeafCert>;
  watchRoots(on: Listener<CaRoots>, signal: AbortSignal): void;
  watchIntentions(destination: string, on: Listener<IntentionRule[]>, signal: AbortSignal): void;
  /** Sidecar instances of `service` in `datacenter`, every health state (the proxy filters). */
  watchConnectHealth(
    service: string,
    datacenter: string,
    on: Listener<HealthEntry[] | undefined>,
    signal: AbortSignal,
  ): void;
  /** Passing mesh gateways of `datacenter` (local: catalog; remote: federation states). */
  watchMeshGateways(
    datacenter: string,
    local: boolean,
    on: Listener<HealthEntry[] | undefined>,
    signal: AbortSignal,
  ): void;
  watchConfigEntry(
    kind: ConfigEntryKind,
    name: string,
    on: Listener<ConfigEntry | undefined>,
    signal: AbortSignal,
  ): void;
  /** Register or refresh the proxy instance (PUT /v1/agent/service/register). */
  registerProxy(registration: Record<string, unknown>, signal: AbortSignal): Promise<void>;
}

export function intentionRules(list: readonly IntentionJson[]): IntentionRule[] {
  return list.map((i, n) => {
    const action = i.Action === 'allow' || i.Action === 'deny' ? i.Action : undefined;
    const rule: IntentionRule = {
      id: i.ID ?? `${i.SourceName}->${i.DestinationName}#${n}`,
      source: { namespace: i.SourceNS || 'default', name: i.SourceName },
      destination: { namespace: i.DestinationNS || 'default', name: i.DestinationName },
      action,
    };
    if (i.Permissions && i.Permissions.length > 0) rule.hasPermissions = true;
    return rule;
  });
}

export interface ApiDataSourcesOptions {
  /** Per-round blocking wait (Consul default 5m). Short in tests. */
  wait?: string;
}

export class ApiDataSources implements ProxyDataSources {
  constructor(
    private readonly api: ApiClient,
    private readonly deps: { logger: Logger; clock?: Clock },
    private readonly options: ApiDataSourcesOptions = {},
  ) {}

  async localDatacenter(signal: AbortSignal): Promise<string> {
    const res = await this.api.get<{ Config?: { Datacenter?: string } }>('/v1/agent/self', { signal });
    const dc = res.body.Config?.Datacenter;
    if (!dc)
      throw new ApiError(
        500,
        'agent/self has no Config.Datacenter',
        'MESH_ERR_INTERNAL',
        'GET /v1/agent/self',
      );
    return dc;
  }

  async findSidecarFor(serviceId: string, signal: AbortSignal): Promise<AgentService> {
    const res = await this.api.get<Record<string, AgentService>>('/v1/agent/services', { signal });
    const found = Object.values(res.body ?? {}).filter(
      (s) =>
        s.Kind === 'connect-proxy' &&
        (s.Proxy?.DestinationServiceID ?? s.Proxy?.DestinationServiceName) === serviceId,
    );
    if (found.length === 0)
      throw new MeshError(
        'MESH_ERR_PROXY_REGISTRATION',
        `no connect-proxy registration has DestinationServiceID "${serviceId}"; register the service with Connect.SidecarService or a connect-proxy`,
      );
    if (found.length > 1)
      throw new MeshError(
        'MESH_ERR_PROXY_REGISTRATION',
        `${found.length} connect-proxy registrations are sidecars for "${serviceId}" (${found.map((f) => f.ID).join(', ')}); start the proxy by its ID`,
      );
    return found[0]!;
  }

  /**
   * A blocking watch. When `onError` is given the caller turns the server's error answers into a
   * value (undefined: "cannot be read"); the watch then restarts from index 0 after a backoff, because ApiClient's
   * watch only reports a change of index and a server that comes back at the same index would
   * otherwise leave the caller stuck on the failure.
   */
  private run<T>(
    path: string,
    query: Record<string, string | boolean | undefined> | undefined,
    on: (body: T, meta: QueryMeta) => void,
    signal: AbortSignal,
    onError?: (err: unknown) => void,
  ): void {
    const clock = this.deps.clock ?? systemClock;
    let attempt = 0;
    const start = (): void => {
      if (signal.aborted) return;
      const round = new AbortController();
      const stop = (): void => round.abort();
      signal.addEventListener('abort', stop, { once: true });
      let failed = false;
      const opts: Parameters<ApiClient['watch']>[2] = {
        signal: round.signal,
        wait: this.options.wait ?? '5m',
        onError: (err, n) => {
          if (n === 0) this.deps.logger.debug({ path, err: String(err) }, 'watch round failed');
          // Only an answer from the server ("that DC cannot be read") makes data unreadable. When
          // the local server itself is down (restart, primary outage) the last-known targets,
          // intentions and certificates stay in use and the watch keeps retrying: the data plane
          // must not stop because the control plane blinked.
          if (!onError || failed || !(err instanceof ApiError)) return;
          failed = true;
          onError(err);
          round.abort();
          signal.removeEventListener('abort', stop);
          sleep(clock, backoff(attempt++, 250, 30_000), signal).then(start, () => undefined);
        },
      };
      if (query) opts.query = query;
      void this.api.watch<T>(
        path,
        (body, meta) => {
          attempt = 0;
          on(body, meta);
        },
        opts,
      );
    };
    start();
  }

  watchRegistration(proxyId: string, on: Listener<AgentService | undefined>, signal: AbortSignal): void {
    this.run<AgentService>(
      `/v1/agent/service/${encodeURIComponent(proxyId)}`,
      undefined,
      (b) => on(b),
      signal,
      (err) => {
        if (err instanceof ApiError && err.httpStatus === 404) on(undefined);
      },
    );
  }

  watchLeaf(service: string, on: Listener<LeafCert>, signal: AbortSignal): void {
    this.run<LeafCert>(
      `/v1/agent/connect/ca/leaf/${encodeURIComponent(service)}`,
      undefined,
      (b) => on(b),
      signal,
    );
  }

  async fetchLeaf(service: string, signal: AbortSignal): Promise<LeafCert> {
    return (
      await this.api.get<LeafCert>(`/v1/agent/connect/ca/leaf/${encodeURIComponent(service)}`, { signal })
    ).body;
  }

  watchRoots(on: Listener<CaRoots>, signal: AbortSignal): void {
    this.run<CaRoots>('/v1/agent/connect/ca/roots', undefined, (b) => on(b), signal);
  }

  watchIntentions(destination: string, on: Listener<IntentionRule[]>, signal: AbortSignal): void {
    this.run<Record<string, IntentionJson[]>>(
      '/v1/connect/intentions/match',
      { by: 'destination', name: destination },
      (b) => on(intentionRules(b?.[destination] ?? [])),
      signal,
    );
  }

  watchConnectHealth(
    service: string,
    datacenter: string,
    on: Listener<HealthEntry[] | undefined>,
    signal: AbortSignal,
  ): void {
    this.run<HealthEntry[]>(
      `/v1/health/connect/${encodeURIComponent(service)}`,
      { dc: datacenter },
      (b) => on(b ?? []),
      signal,
      () => on(undefined),
    );
  }

  watchMeshGateways(
    datacenter: string,
    local: boolean,
    on: Listener<HealthEntry[] | undefined>,
    signal: AbortSignal,
  ): void {
    if (local) {
      this.run<HealthEntry[]>(
        '/v1/health/service/mesh-gateway',
        { passing: true },
        (b) => on(b ?? []),
        signal,
        () => on(undefined),
      );
      return;
    }
    this.run<Record<string, HealthEntry[]>>(
      '/v1/internal/federation-states/mesh-gateways',
      undefined,
      (b) => on(b?.[datacenter] ?? []),
      signal,
      () => on(undefined),
    );
  }

  watchConfigEntry(
    kind: ConfigEntryKind,
    name: string,
    on: Listener<ConfigEntry | undefined>,
    signal: AbortSignal,
  ): void {
    // The list endpoint, not /v1/config/<kind>/<name>: a missing entry is a 404 there, and a 404
    // cannot block, so an entry created later would only be seen after the error backoff.
    this.run<ConfigEntry[]>(
      `/v1/config/${kind}`,
      undefined,
      (list) => on((list ?? []).find((e) => e['Name'] === name)),
      signal,
    );
  }

  async registerProxy(registration: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    await this.api.put('/v1/agent/service/register', registration, { signal });
  }
}
