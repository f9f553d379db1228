// GatewayRegistration: registers this gateway in the local catalog as Consul does for a mesh
// gateway (Kind mesh-gateway, LAN and WAN tagged addresses, a TCP check on the listener) and
// deregisters it on close. Other DCs find it through federation states built from this entry.

import type { ApiClient } from '@meshfed/client';
import { errorMessage, formatHostPort, type HostPort, type Logger, type Startable } from '@meshfed/core';

export interface GatewayRegistrationOptions {
  /** Service name; default `mesh-gateway`. */
  name?: string;
  /** Service ID; default `<name>-<lan host>-<lan port>`. */
  id?: string;
  lan: HostPort;
  wan?: HostPort;
  /** Advertise that this gateway carries server traffic (Consul's `consul-wan-federation` meta). */
  exposeServers?: boolean;
  checkInterval?: string;
}

export class GatewayRegistration implements Startable {
  readonly id: string;
  private registered = false;
  constructor(
    private readonly options: GatewayRegistrationOptions,
    private readonly deps: { client: ApiClient; logger: Logger },
  ) {
    const name = options.name ?? 'mesh-gateway';
    this.id = options.id ?? `${name}-${options.lan.host}-${options.lan.port}`;
  }

  /** The Consul agent service definition sent to PUT /v1/agent/service/register. */
  definition(): Record<string, unknown> {
    const o = this.options;
    const wan = o.wan ?? o.lan;
    return {
      Kind: 'mesh-gateway',
      ID: this.id,
      Name: o.name ?? 'mesh-gateway',
      Address: o.lan.host,
      Port: o.lan.port,
      TaggedAddresses: {
        lan: { Address: o.lan.host, Port: o.lan.port },
        wan: { Address: wan.host, Port: wan.port },
      },
      Meta: o.exposeServers === false ? {} : { 'consul-wan-federation': '1' },
      Check: {
        Name: 'Mesh Gateway Listening',
        TCP: formatHostPort(o.lan),
        Interval: o.checkInterval ?? '10s',
        DeregisterCriticalServiceAfter: '6h',
      },
    };
  }

  async start(): Promise<void> {
    await this.deps.client.put('/v1/agent/service/register', this.definition());
    this.registered = true;
    this.deps.logger.info({ id: this.id, lan: formatHostPort(this.options.lan) }, 'gateway registered');
  }

  async close(): Promise<void> {
    if (!this.registered) return;
    this.registered = false;
    try {
      await this.deps.client.put(`/v1/agent/service/deregister/${encodeURIComponent(this.id)}`);
    } catch (err) {
      this.deps.logger.warn({ id: this.id, error: errorMessage(err) }, 'gateway deregistration failed');
    }
  }
}
