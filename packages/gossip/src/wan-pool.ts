// WanPool: how a meshfed server sits in the WAN gossip pool. Node name `<node>.<dc>`, tags
// { role: 'meshfed', dc, fed_addr, wan_gateways, build }, accessors for the federation layer
// (which DCs exist, their servers' federation addresses), and retry-join with backoff.

import { backoff, MeshError, sleep, type Clock, type Logger } from '@meshfed/core';
import { GossipPool, type GossipPoolOptions, type Member } from './gossip-pool.js';
import type { Transport } from './transport.js';

export interface WanPoolOptions extends Omit<GossipPoolOptions, 'nodeName' | 'tags' | 'profile'> {
  node: string;
  datacenter: string;
  /** host:port where this server accepts federation traffic. */
  fedAddr: string;
  /** host:port of this DC's mesh gateways on the WAN. */
  wanGateways?: string[];
  build?: string;
  profile?: 'lan' | 'wan' | 'local';
  /** Addresses to retry-join until one works. */
  retryJoin?: string[];
  retryMinMs?: number;
  retryMaxMs?: number;
  /** 0 = forever. */
  retryMaxAttempts?: number;
}

export interface WanServer {
  node: string;
  datacenter: string;
  fedAddr: string;
  wanGateways: string[];
  build: string;
  status: Member['status'];
  gossipAddr: string;
}

export function wanTags(
  o: Pick<WanPoolOptions, 'datacenter' | 'fedAddr' | 'wanGateways' | 'build'>,
): Record<string, string> {
  return {
    role: 'meshfed',
    dc: o.datacenter,
    fed_addr: o.fedAddr,
    wan_gateways: (o.wanGateways ?? []).join(','),
    build: o.build ?? '0.1.0',
  };
}

export function toWanServer(m: Member): WanServer | undefined {
  if (m.tags['role'] !== 'meshfed' || !m.tags['dc']) return undefined;
  const dot = m.name.lastIndexOf('.');
  return {
    node: dot > 0 ? m.name.slice(0, dot) : m.name,
    datacenter: m.tags['dc'],
    fedAddr: m.tags['fed_addr'] ?? '',
    wanGateways: (m.tags['wan_gateways'] ?? '').split(',').filter(Boolean),
    build: m.tags['build'] ?? '',
    status: m.status,
    gossipAddr: `${m.addr}:${m.port}`,
  };
}

export class WanPool {
  readonly pool: GossipPool;
  private readonly abort = new AbortController();
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(
    private readonly options: WanPoolOptions,
    deps: { logger: Logger; clock: Clock; transport?: Transport; random?: () => number },
  ) {
    if (!/^[A-Za-z0-9-]+$/.test(options.datacenter))
      throw new MeshError(
        'MESH_ERR_GOSSIP_JOIN',
        `invalid datacenter name ${JSON.stringify(options.datacenter)}`,
      );
    this.clock = deps.clock;
    this.log = deps.logger;
    this.pool = new GossipPool(
      {
        ...options,
        nodeName: `${options.node}.${options.datacenter}`,
        profile: options.profile ?? 'wan',
        tags: wanTags(options),
      },
      deps,
    );
  }

  async start(): Promise<void> {
    await this.pool.start();
    if (this.options.retryJoin && this.options.retryJoin.length > 0)
      void this.retryJoin(this.options.retryJoin);
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('closed'));
    await this.pool.close();
  }

  /** Try to join until one address answers; resolves with the number joined, or 0 if closed/exhausted. */
  async retryJoin(addrs: string[]): Promise<number> {
    const max = this.options.retryMaxAttempts ?? 0;
    for (let attempt = 0; max === 0 || attempt < max; attempt++) {
      if (this.abort.signal.aborted) return 0;
      try {
        return await this.pool.join(addrs);
      } catch (err) {
        const wait = backoff(attempt, this.options.retryMinMs ?? 1_000, this.options.retryMaxMs ?? 30_000);
        this.log.warn(
          { attempt, retryInMs: Math.round(wait), err: (err as Error).message },
          'WAN join failed, retrying',
        );
        try {
          await sleep(this.clock, wait, this.abort.signal);
        } catch {
          return 0;
        }
      }
    }
    return 0;
  }

  servers(): WanServer[] {
    return this.pool
      .members()
      .map(toWanServer)
      .filter((s): s is WanServer => s !== undefined);
  }

  datacenters(): string[] {
    return [...new Set(this.servers().map((s) => s.datacenter))].sort();
  }

  /** Federation addresses of the alive servers of one DC. */
  fedAddrs(dc: string): string[] {
    return this.servers()
      .filter((s) => s.datacenter === dc && s.status === 'alive')
      .map((s) => s.fedAddr);
  }
}
