// What a secondary learned when it joined with a token — the primary's federation addresses and the
// WAN gossip addresses the primary handed out — kept in the store, so that after a restart the
// server finds the federation again even when its YAML names no gossip join address (the token was
// all the operator gave it).

import type { Logger } from '@meshfed/core';
import type { JoinResult } from '@meshfed/federation';
import type { WanPool } from '@meshfed/gossip';
import type { SqliteStore } from '@meshfed/store';

const BLOB = 'federation_join';

export interface RememberedJoin {
  primaryDatacenter: string;
  /** host:port of the primary's federation port(s). */
  servers: string[];
  /** host:port of WAN gossip members to (re)join. */
  gossip: string[];
}

export function loadJoin(store: SqliteStore): RememberedJoin | undefined {
  const v = store.getBlob(BLOB) as Partial<RememberedJoin> | undefined;
  if (!v || typeof v.primaryDatacenter !== 'string') return undefined;
  const strings = (x: unknown): string[] =>
    Array.isArray(x) ? x.filter((a): a is string => typeof a === 'string') : [];
  return { primaryDatacenter: v.primaryDatacenter, servers: strings(v.servers), gossip: strings(v.gossip) };
}

/** Remember the join and join the WAN gossip pool through the addresses it gave; returns how many answered. */
export async function afterJoin(
  r: JoinResult,
  dialled: string | undefined,
  deps: { store: SqliteStore; gossip: WanPool; logger: Logger },
): Promise<number> {
  const servers = [...new Set([...r.primaryAddrs, ...(dialled ? [dialled] : [])])];
  deps.store.putBlob(BLOB, {
    primaryDatacenter: r.primaryDatacenter,
    servers,
    gossip: r.gossipAddrs,
  } satisfies RememberedJoin);
  if (r.gossipAddrs.length === 0) return 0;
  const n = await deps.gossip.pool.join(r.gossipAddrs).catch(() => 0);
  if (n === 0)
    deps.logger.warn(
      { addrs: r.gossipAddrs },
      'joined the federation but no WAN gossip address answered; set gossip.join or run meshfed join -wan <addr>',
    );
  else deps.logger.info({ joined: n }, 'joined the WAN gossip pool through the primary');
  return n;
}
