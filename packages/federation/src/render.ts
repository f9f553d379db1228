// Plain-text rendering of federation status for `meshfed federation status` (the CLI prints it;
// the HTTP API serves the FederationStatus JSON itself).

import type { FederationStatus } from './federation.js';

const yesNo = (v: boolean | undefined): string => (v === undefined ? '-' : v ? 'yes' : 'NO');

export function renderFederationStatus(s: FederationStatus): string {
  const head = [
    'Datacenter',
    'Role',
    'Reachable',
    'Gossip',
    'Index',
    'Lag ms',
    'Hashes equal',
    'Stale',
    'Last error',
  ];
  const rows = s.datacenters.map((d) => [
    d.local ? `${d.datacenter} (this)` : d.datacenter,
    d.role,
    yesNo(d.reachable),
    d.gossip,
    d.replicationIndex === undefined ? '-' : String(d.replicationIndex),
    d.lagMs === undefined ? '-' : d.lagMs.toFixed(0),
    yesNo(d.hashesEqual),
    d.local ? '-' : yesNo(d.stale),
    (d.downForMs !== undefined ? `down ${Math.round(d.downForMs / 1000)}s` : '') +
      (d.downForMs !== undefined && d.lastError ? '; ' : '') +
      (d.lastError ?? ''),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}
