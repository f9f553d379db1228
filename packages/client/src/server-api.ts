// MeshApi: typed methods for the endpoints packages/server serves, over ApiClient. The JSON shapes
// are Consul's (PascalCase); they are declared here, not imported from the server, so that the
// client never depends on the server package.

import type { CaRootsResponse } from '@meshfed/core';
import type { ApiClient, ApiResponse, RequestOptions } from './api-client.js';

export interface CatalogNode {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: Record<string, string>;
  Meta: Record<string, string>;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface AgentService {
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  TaggedAddresses: Record<string, { Address: string; Port: number }>;
  Meta: Record<string, string>;
  Port: number;
  Kind?: '' | 'connect-proxy' | 'mesh-gateway';
  Proxy?: {
    DestinationServiceName: string;
    DestinationServiceID?: string;
    LocalServiceAddress?: string;
    LocalServicePort?: number;
    Upstreams?: Array<{
      DestinationName: string;
      Datacenter?: string;
      LocalBindPort?: number;
      LocalBindAddress?: string;
    }>;
    MeshGateway?: { Mode?: '' | 'none' | 'local' | 'remote' };
    Config?: Record<string, unknown>;
  };
  Connect?: { Native?: boolean };
}

export interface HealthCheck {
  Node: string;
  CheckID: string;
  Name: string;
  Status: 'passing' | 'warning' | 'critical';
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  Type: string;
  CreateIndex?: number;
  ModifyIndex?: number;
}

export interface ServiceEntry {
  Node: CatalogNode;
  Service: AgentService & { CreateIndex: number; ModifyIndex: number };
  Checks: HealthCheck[];
}

export interface CatalogServiceEntry {
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: Record<string, string>;
  NodeMeta: Record<string, string>;
  ServiceKind: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  ServiceAddress: string;
  ServiceTaggedAddresses: Record<string, { Address: string; Port: number }>;
  ServiceMeta: Record<string, string>;
  ServicePort: number;
  ServiceProxy: AgentService['Proxy'] | Record<string, never>;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface Intention {
  ID: string;
  Description: string;
  SourceNS: string;
  SourceName: string;
  DestinationNS: string;
  DestinationName: string;
  SourceType: 'consul';
  Action?: 'allow' | 'deny';
  Permissions?: unknown[];
  Precedence: number;
  Meta: Record<string, string>;
  CreatedAt: string;
  UpdatedAt: string;
  CreateIndex: number;
  ModifyIndex: number;
}

export type ConfigEntry = { Kind: string; Name: string; CreateIndex?: number; ModifyIndex?: number } & Record<
  string,
  unknown
>;

export interface AgentServiceRegistration {
  Name: string;
  ID?: string;
  Tags?: string[];
  Address?: string;
  Port?: number;
  Meta?: Record<string, string>;
  Kind?: 'connect-proxy' | 'mesh-gateway';
  Proxy?: AgentService['Proxy'];
  TaggedAddresses?: Record<string, { Address: string; Port: number }>;
  Check?: Record<string, unknown>;
  Checks?: Record<string, unknown>[];
  Connect?: { Native?: boolean; SidecarService?: Partial<AgentServiceRegistration> };
}

type Opts = Pick<RequestOptions, 'index' | 'wait' | 'signal'> & { dc?: string };
const q = (o: Opts | undefined, extra: RequestOptions['query'] = {}): RequestOptions => ({
  ...(o?.index === undefined ? {} : { index: o.index }),
  ...(o?.wait === undefined ? {} : { wait: o.wait }),
  ...(o?.signal === undefined ? {} : { signal: o.signal }),
  query: { ...extra, ...(o?.dc ? { dc: o.dc } : {}) },
});
const enc = encodeURIComponent;

export class MeshApi {
  constructor(readonly client: ApiClient) {}

  // catalog
  datacenters(): Promise<ApiResponse<string[]>> {
    return this.client.get('/v1/catalog/datacenters');
  }
  nodes(o?: Opts): Promise<ApiResponse<CatalogNode[]>> {
    return this.client.get('/v1/catalog/nodes', q(o));
  }
  services(o?: Opts): Promise<ApiResponse<Record<string, string[]>>> {
    return this.client.get('/v1/catalog/services', q(o));
  }
  catalogService(name: string, o?: Opts & { tag?: string }): Promise<ApiResponse<CatalogServiceEntry[]>> {
    return this.client.get(`/v1/catalog/service/${enc(name)}`, q(o, { tag: o?.tag }));
  }
  catalogRegister(body: Record<string, unknown>): Promise<ApiResponse<boolean>> {
    return this.client.put('/v1/catalog/register', body);
  }
  catalogDeregister(body: {
    Node: string;
    ServiceID?: string;
    CheckID?: string;
  }): Promise<ApiResponse<boolean>> {
    return this.client.put('/v1/catalog/deregister', body);
  }

  // health
  healthService(
    name: string,
    o?: Opts & { passing?: boolean; tag?: string },
  ): Promise<ApiResponse<ServiceEntry[]>> {
    return this.client.get(`/v1/health/service/${enc(name)}`, q(o, { passing: o?.passing, tag: o?.tag }));
  }
  healthConnect(name: string, o?: Opts & { passing?: boolean }): Promise<ApiResponse<ServiceEntry[]>> {
    return this.client.get(`/v1/health/connect/${enc(name)}`, q(o, { passing: o?.passing }));
  }
  healthState(
    state: 'any' | 'passing' | 'warning' | 'critical',
    o?: Opts,
  ): Promise<ApiResponse<HealthCheck[]>> {
    return this.client.get(`/v1/health/state/${state}`, q(o));
  }
  meshGateways(o?: Opts): Promise<ApiResponse<Record<string, ServiceEntry[]>>> {
    return this.client.get('/v1/internal/federation-states/mesh-gateways', q(o));
  }

  // agent
  agentRegister(body: AgentServiceRegistration): Promise<ApiResponse<null>> {
    return this.client.put('/v1/agent/service/register', body);
  }
  agentDeregister(id: string): Promise<ApiResponse<null>> {
    return this.client.put(`/v1/agent/service/deregister/${enc(id)}`);
  }
  agentServices(): Promise<ApiResponse<Record<string, AgentService>>> {
    return this.client.get('/v1/agent/services');
  }
  agentChecks(): Promise<ApiResponse<Record<string, HealthCheck>>> {
    return this.client.get('/v1/agent/checks');
  }
  checkTtl(id: string, status: 'pass' | 'warn' | 'fail', note?: string): Promise<ApiResponse<null>> {
    return this.client.put(`/v1/agent/check/${status}/${enc(id)}`, undefined, { query: { note } });
  }
  authorize(
    target: string,
    clientCertUri: string,
  ): Promise<ApiResponse<{ Authorized: boolean; Reason: string }>> {
    return this.client.post('/v1/agent/connect/authorize', { Target: target, ClientCertURI: clientCertUri });
  }

  // CA
  caRoots(o?: Opts): Promise<ApiResponse<CaRootsResponse>> {
    return this.client.get('/v1/agent/connect/ca/roots', q(o));
  }
  leaf(
    service: string,
    o?: Opts,
  ): Promise<
    ApiResponse<Record<string, unknown> & { CertPEM: string; PrivateKeyPEM: string; ValidBefore: string }>
  > {
    return this.client.get(`/v1/agent/connect/ca/leaf/${enc(service)}`, q(o));
  }

  // intentions
  intentions(o?: Opts): Promise<ApiResponse<Intention[]>> {
    return this.client.get('/v1/connect/intentions', q(o));
  }
  intentionGet(source: string, destination: string): Promise<ApiResponse<Intention>> {
    return this.client.get('/v1/connect/intentions/exact', { query: { source, destination } });
  }
  intentionUpsert(
    source: string,
    destination: string,
    body: {
      Action?: 'allow' | 'deny';
      Description?: string;
      Meta?: Record<string, string>;
      Permissions?: unknown[];
    },
  ): Promise<ApiResponse<boolean>> {
    return this.client.put('/v1/connect/intentions/exact', body, { query: { source, destination } });
  }
  intentionDelete(source: string, destination: string): Promise<ApiResponse<boolean>> {
    return this.client.delete('/v1/connect/intentions/exact', { query: { source, destination } });
  }
  intentionCheck(source: string, destination: string): Promise<ApiResponse<{ Allowed: boolean }>> {
    return this.client.get('/v1/connect/intentions/check', { query: { source, destination } });
  }
  intentionMatch(
    by: 'source' | 'destination',
    name: string,
  ): Promise<ApiResponse<Record<string, Intention[]>>> {
    return this.client.get('/v1/connect/intentions/match', { query: { by, name } });
  }

  // config entries
  configWrite(entry: ConfigEntry, cas?: number): Promise<ApiResponse<boolean>> {
    return this.client.put('/v1/config', entry, { query: { cas } });
  }
  configRead(kind: string, name: string, o?: Opts): Promise<ApiResponse<ConfigEntry>> {
    return this.client.get(`/v1/config/${enc(kind)}/${enc(name)}`, q(o));
  }
  configList(kind: string, o?: Opts): Promise<ApiResponse<ConfigEntry[]>> {
    return this.client.get(`/v1/config/${enc(kind)}`, q(o));
  }
  configDelete(kind: string, name: string, cas?: number): Promise<ApiResponse<unknown>> {
    return this.client.delete(`/v1/config/${enc(kind)}/${enc(name)}`, { query: { cas } });
  }

  // status
  leader(): Promise<ApiResponse<string>> {
    return this.client.get('/v1/status/leader');
  }
}
