// Federation replication benchmark (a program, not a test).
//
//   npm run build && npx tsx scripts/bench/federation.ts [writes=1000] [rate=500] [joinRows=10000]
//
// A primary and two secondaries in one process over real WebSocket/mTLS on 127.0.0.1 (certificates
// from the openssl test CA), in-memory stores. Measures, for each intention written in the primary,
// the time until it is applied (visible to a blocking query) in each secondary: back to back, and
// at a steady rate. Then the time for a new DC to go from join() to fully replicated with
// `joinRows` intentions and config entries in the primary.
//
// Peer: Consul replicates config entries with a pull loop limited to 1 round/s (burst 5) — see
// shared/reference/anchors.md §2.5; there is no Consul binary on this machine, so it is quoted, not run.

import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeDc, makeFederation, type Dc } from '../../packages/federation/test/fixtures/cluster.js';

const [writes = 1000, rate = 500, joinRows = 10_000] = process.argv.slice(2).map(Number);
const teardowns: (() => unknown)[] = [];
const t = { teardown: (fn: () => unknown) => void teardowns.push(fn) };
const dir = mkdtempSync(join(tmpdir(), 'meshfed-bench-fed-'));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Record when each key becomes visible in a secondary. */
function tap(dc: Dc, seen: Map<string, number>): void {
  const orig = dc.store.applyReplicated.bind(dc.store);
  dc.store.applyReplicated = (s, i, changes, o) => {
    orig(s, i, changes, o);
    const now = performance.now();
    for (const c of changes) if (!seen.has(c.key)) seen.set(c.key, now);
  };
}

async function until(check: () => boolean, ms = 60_000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function run(
  label: string,
  primary: Dc,
  secs: Dc[],
  prefix: string,
  intervalMs: number,
): Promise<string[]> {
  const seen = secs.map(() => new Map<string, number>());
  secs.forEach((s, i) => tap(s, seen[i]!));
  const written = new Map<string, number>();
  const start = performance.now();
  for (let i = 0; i < writes; i++) {
    const key = `${prefix}${i}->db`;
    if (intervalMs > 0) {
      const due = start + i * intervalMs;
      while (performance.now() < due) await new Promise((r) => setImmediate(r));
    } else if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    written.set(key, performance.now());
    primary.store.put('intentions', key, {
      SourceName: `${prefix}${i}`,
      DestinationName: 'db',
      Action: 'allow',
    });
  }
  await until(() => seen.every((m) => [...written.keys()].every((k) => m.has(k))));
  return secs.map((s, i) => {
    const lags = [...written].map(([k, w]) => seen[i]!.get(k)! - w);
    const last = Math.max(...[...written.keys()].map((k) => seen[i]!.get(k)!));
    const perSec = writes / ((last - start) / 1000);
    return `| ${label} | ${s.name} | ${writes} | ${pct(lags, 50).toFixed(2)} | ${pct(lags, 99).toFixed(2)} | ${Math.max(...lags).toFixed(2)} | ${perSec.toFixed(0)} |`;
  });
}

async function main(): Promise<void> {
  const { primary, secondaries, membership } = await makeFederation(t, dir);
  await until(() => secondaries.every((s) => s.fed.peerFor('dc1') !== undefined));
  const rows: string[] = [];
  rows.push(...(await run('back to back', primary, secondaries, 'b', 0)));
  rows.push(...(await run(`steady ${rate}/s`, primary, secondaries, 's', 1000 / rate)));

  // Join with a large primary.
  for (let i = 0; i < joinRows / 2; i++) {
    primary.store.put('intentions', `j${i}->db`, {
      SourceName: `j${i}`,
      DestinationName: 'db',
      Action: 'allow',
    });
    primary.store.put('config_entries', `service-defaults/j${i}`, {
      Kind: 'service-defaults',
      Name: `j${i}`,
      Protocol: 'http',
    });
  }
  const dc4 = await makeDc(t, { name: 'dc4', primary: 'dc1', membership, baseDir: dir });
  const j0 = performance.now();
  await dc4.fed.join(primary.fed.createJoinToken({ ttlMs: 60_000 }).token);
  const joined = performance.now();
  await dc4.start();
  await until(() => dc4.store.replicationCursor('dc1') === primary.store.currentIndex());
  const done = performance.now();
  const total = primary.store.snapshot(['intentions', 'config_entries']).rows.length;

  const cpu = cpus();
  console.log(
    `# federation replication — ${cpu.length} × ${cpu[0]?.model ?? '?'}, node ${process.version}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log('');
  console.log('| run | secondary | writes | lag p50 ms | lag p99 ms | lag max ms | applied/s |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) console.log(r);
  console.log('');
  console.log(
    `join → fully replicated, ${total} rows: join ${(joined - j0).toFixed(0)} ms (CSR signed, bundle), then snapshot applied ${(done - joined).toFixed(0)} ms; total ${(done - j0).toFixed(0)} ms`,
  );
  console.log(
    'Consul (quoted, not run): config-entry replication pull loop 1 round/s, burst 5 (anchors §2.5).',
  );
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const fn of teardowns.reverse()) await fn();
    rmSync(dir, { recursive: true, force: true });
  });
