// The `services:` of a config file, registered in the local server through the agent API, in
// Consul's shape (Connect.SidecarService), exactly as any other client would register them.

import type { ApiClient } from '@meshfed/client';
import type { MeshfedConfig } from '@meshfed/config';

type ServiceConfig = MeshfedConfig['services'][number];
type CheckConfig = ServiceConfig['checks'][number];

const goDuration = (ms: number): string => `${ms / 1000}s`;

function checkBody(c: CheckConfig, fallbackName: string): Record<string, unknown> {
  const body: Record<string, unknown> = { Name: c.name ?? fallbackName };
  if (c.tcp) body['TCP'] = c.tcp;
  if (c.http) body['HTTP'] = c.http;
  if (c.ttl !== undefined) body['TTL'] = goDuration(c.ttl);
  if (c.tcp || c.http) {
    body['Interval'] = goDuration(c.interval);
    body['Timeout'] = goDuration(c.timeout);
  }
  if (c.deregister_critical_service_after !== undefined)
    body['DeregisterCriticalServiceAfter'] = goDuration(c.deregister_critical_service_after);
  return body;
}

export function serviceRegistration(svc: ServiceConfig, config: MeshfedConfig): Record<string, unknown> {
  const id = svc.id ?? svc.name;
  const checks = [...(svc.check ? [svc.check] : []), ...svc.checks].map((c, i) =>
    checkBody(c, `${svc.name} check${i ? ` ${i + 1}` : ''}`),
  );
  const sidecar = svc.connect.sidecar_service;
  const address = svc.address ?? config.advertise_addr ?? config.bind_addr;
  return {
    ID: id,
    Name: svc.name,
    Address: address,
    Port: svc.port,
    Tags: svc.tags,
    Meta: svc.meta,
    ...(checks.length ? { Checks: checks } : {}),
    ...(sidecar.enabled
      ? {
          Connect: {
            SidecarService: {
              ...(sidecar.port ? { Port: sidecar.port } : {}),
              ...(sidecar.address ? { Address: sidecar.address } : {}),
              Proxy: {
                LocalServiceAddress: sidecar.proxy.local_service_address,
                LocalServicePort: sidecar.proxy.local_service_port ?? svc.port,
                Upstreams: sidecar.proxy.upstreams.map((u) => ({
                  DestinationName: u.destination_name,
                  DestinationNamespace: u.destination_namespace,
                  ...(u.datacenter ? { Datacenter: u.datacenter } : {}),
                  LocalBindAddress: u.local_bind_address,
                  LocalBindPort: u.local_bind_port,
                  ...(u.mesh_gateway.mode ? { MeshGateway: { Mode: u.mesh_gateway.mode } } : {}),
                  Config: { connect_timeout_ms: u.connect_timeout },
                })),
              },
            },
          },
        }
      : {}),
  };
}

export async function registerConfiguredServices(client: ApiClient, config: MeshfedConfig): Promise<void> {
  for (const svc of config.services)
    await client.put('/v1/agent/service/register', serviceRegistration(svc, config));
}
