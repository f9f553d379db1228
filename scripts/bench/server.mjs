// Server benchmark (a program, not a test). Run after `npm run build`:
//   node scripts/bench/server.mjs [instances=10000] [watchers=1000]
// The server runs in its own process (packages/server/dist/test/fixtures/crash-server.js) on a
// fresh data dir; this process is the client. Measures:
//   1. registering N service instances over HTTP (PUT /v1/catalog/register, 16 in flight), and the
//      peer: the same number of SqliteStore writes in-process (no HTTP), to separate fsync from API cost;
//   2. W blocking watchers on W different services, then single changes: wake latency and how many woke;
//   3. W blocking watchers on ONE service, one change: fan-out wake latency;
//   4. GET /v1/health/service/<svc> latency with N instances in the catalog.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '@meshfed/core';
import { SqliteStore } from '@meshfed/store';

const N = Number(process.argv[2] ?? 10_000);
const W = Number(process.argv[3] ?? 1_000);
const PER_SERVICE = 10;
const root = fileURLToPath(new URL('../../', import.meta.url));
const fixture = join(root, 'packages/server/dist/test/fixtures/crash-server.js');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function req(base, method, path, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const r = http.request(
      new URL(path, base),
      { method, agent, headers: payload ? { 'content-length': payload.length } : {} },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            index: Number(res.headers['x-consul-index']),
            body: Buffer.concat(chunks),
          }),
        );
      },
    );
    r.on('error', reject);
    r.end(payload);
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
const f = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');

const dir = mkdtempSync(join(tmpdir(), 'meshfed-bench-'));
const child = spawn(process.execPath, [fixture, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
const base = await new Promise((resolve, reject) => {
  let out = '';
  child.stdout.on('data', (c) => {
    out += c;
    if (out.includes('\n')) resolve(out.split('\n')[0].trim());
  });
  child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
});
const results = [];
try {
  // 1. registrations
  const nodes = Math.ceil(N / 100);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < N; i = next++) {
        const svc = `svc-${Math.floor(i / PER_SERVICE)}`;
        const r = await req(base, 'PUT', '/v1/catalog/register', {
          Node: `node-${i % nodes}`,
          Address: `10.0.${Math.floor((i % nodes) / 250)}.${(i % nodes) % 250}`,
          Service: { ID: `${svc}-${i}`, Service: svc, Port: 20000 + (i % 1000), Tags: ['v1'] },
          Check: { CheckID: `c-${i}`, Name: 'alive', Status: 'passing', ServiceID: `${svc}-${i}` },
        });
        if (r.status !== 200) throw new Error(`register ${i}: ${r.status} ${r.body}`);
      }
    }),
  );
  const regS = (performance.now() - t0) / 1000;
  results.push([
    'register over HTTP (catalog, 16 in flight)',
    `${N} in ${f(regS)} s`,
    `${f(N / regS)} writes/s`,
  ]);

  const peerDir = mkdtempSync(join(tmpdir(), 'meshfed-bench-peer-'));
  const store = new SqliteStore({ path: join(peerDir, 'state.db') }, { logger: silentLogger });
  const p0 = performance.now();
  for (let i = 0; i < N; i++)
    store.write([
      {
        table: 'services',
        key: `n/${i}`,
        op: 'put',
        value: { ID: String(i), Port: i },
        secondary: `svc-${i % 1000}`,
      },
    ]);
  const peerS = (performance.now() - p0) / 1000;
  store.close();
  rmSync(peerDir, { recursive: true, force: true });
  results.push([
    'peer: SqliteStore.write in-process (fsync per tx)',
    `${N} in ${f(peerS)} s`,
    `${f(N / peerS)} writes/s`,
  ]);

  // 2. W watchers on W different services; one change at a time
  const services = Math.min(W, Math.floor(N / PER_SERVICE));
  const watchers = [];
  const arm = async (svc) => {
    const first = await req(base, 'GET', `/v1/health/service/${svc}`);
    const w = { svc, woke: undefined };
    w.done = req(base, 'GET', `/v1/health/service/${svc}?index=${first.index}&wait=120s`).then(
      () => (w.woke = performance.now()),
      () => undefined,
    );
    watchers.push(w);
  };
  for (let i = 0; i < services; i++) await arm(`svc-${i}`);
  await new Promise((r) => setTimeout(r, 500));
  const lat = [];
  let wokeOthers = 0;
  const rounds = 20;
  for (let k = 0; k < rounds; k++) {
    const target = watchers[(k * 37) % watchers.length];
    if (target.woke !== undefined) continue;
    const before = watchers.filter((w) => w.woke !== undefined).length;
    const c0 = performance.now();
    await req(base, 'PUT', '/v1/catalog/register', {
      Node: 'node-0',
      Address: '10.0.0.0',
      Service: { ID: `${target.svc}-moved-${k}`, Service: target.svc, Port: 1 },
    });
    await target.done;
    lat.push(target.woke - c0);
    await new Promise((r) => setTimeout(r, 100));
    wokeOthers += watchers.filter((w) => w.woke !== undefined).length - before - 1;
  }
  results.push([
    `${services} watchers on different services, ${lat.length} single changes`,
    `wake p50 ${f(pct(lat, 50))} ms, p99 ${f(pct(lat, 99))} ms`,
    `woke per change: 1 + ${wokeOthers} others in total`,
  ]);
  for (const w of watchers) if (w.woke === undefined) w.abandon = true;

  // 3. W watchers on ONE service; one change
  const fan = [];
  const first = await req(base, 'GET', '/v1/health/service/svc-1');
  for (let i = 0; i < W; i++) {
    const w = { woke: undefined };
    w.done = req(base, 'GET', `/v1/health/service/svc-1?index=${first.index}&wait=120s`).then(
      () => (w.woke = performance.now()),
    );
    fan.push(w);
  }
  await new Promise((r) => setTimeout(r, 1000));
  const c0 = performance.now();
  await req(base, 'PUT', '/v1/catalog/register', {
    Node: 'node-1',
    Address: '10.0.0.1',
    Service: { ID: 'svc-1-fan', Service: 'svc-1', Port: 2 },
  });
  await Promise.all(fan.map((w) => w.done));
  const fanLat = fan.map((w) => w.woke - c0);
  results.push([
    `${W} watchers on one service, one change`,
    `wake p50 ${f(pct(fanLat, 50))} ms, p99 ${f(pct(fanLat, 99))} ms`,
    `${fan.length} woke`,
  ]);

  // 4. health read latency
  const reads = [];
  for (let i = 0; i < 500; i++) {
    const r0 = performance.now();
    const r = await req(base, 'GET', `/v1/health/service/svc-${(i * 7) % services}`);
    reads.push(performance.now() - r0);
    if (r.status !== 200) throw new Error(`read ${r.status}`);
  }
  results.push([
    `GET /v1/health/service (${PER_SERVICE} instances each, ${N} in catalog)`,
    `p50 ${f(pct(reads, 50))} ms, p99 ${f(pct(reads, 99))} ms`,
    '500 sequential reads',
  ]);
} finally {
  child.kill('SIGKILL');
  agent.destroy();
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  `meshfed server bench — node ${process.version}, ${cpus().length}× ${cpus()[0]?.model ?? '?'}, ${new Date().toISOString()}`,
);
console.log('| what | result | rate / count |');
console.log('| --- | --- | --- |');
for (const r of results) console.log(`| ${r.join(' | ')} |`);
process.exit(0);
