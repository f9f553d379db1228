#!/usr/bin/env node
// Simulated-cluster benchmark (not a test): N = 10/50/200 on the in-memory network with the WAN
// profile, 10 % packet loss and one slow node, Lifeguard on vs off ("plain SWIM": no local health,
// fixed minimum suspicion timeout, no confirmations). Prints convergence, detection median/p99,
// false suspicions/deaths, bytes/node/s and CPU. Run after `npm run build`:
//   node packages/gossip/bench/detection.mjs [--sizes 10,50,200] [--window-s 300] [--seed 1]
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { SimCluster, seededRandom } from '../dist/src/index.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const sizes = arg('sizes', '10,50,200').split(',').map(Number);
const windowMs = Number(arg('window-s', '300')) * 1000;
const seed = Number(arg('seed', '1'));
const profile = arg('profile', 'wan');

const q = (xs, p) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
};

async function scenario(n, lifeguard) {
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  const c = new SimCluster({ n, profile, loss: 0.1, seed, memberlist: { lifeguard } });
  await c.start();
  const t0 = c.clock.monotonic();
  await c.joinAll();
  const conv = await c.clock.runUntil(() => c.converged(), 600_000, 250);
  const convMs = conv === undefined ? NaN : c.clock.monotonic() - t0 - 0; // includes the staggered joins
  const gossipMs = c.pools[0].memberlist.config.gossipIntervalMs;

  // false-positive window: 10 % loss plus a slow node paused 0.75–2.25 s, then running 0.75–2.25 s
  const slowIdx = 1;
  const slow = `${SimCluster.host(slowIdx)}:7946`;
  const rnd = seededRandom(seed + 99);
  let stopped = false;
  let cycle;
  const flip = () => {
    stopped = !stopped;
    if (stopped) c.net.paused.add(slow);
    else c.net.paused.delete(slow);
    cycle = c.clock.setTimeout(flip, 750 + rnd() * 1500);
  };
  flip();
  const base = snapshot(c);
  const bytes0 = c.net.bytes;
  const ev0 = c.events.length;
  await c.clock.run(windowMs);
  const after = snapshot(c);
  const bytesPerNodeS = (c.net.bytes - bytes0) / n / (windowMs / 1000);
  const fpFailedEvents = c.events.slice(ev0).filter((e) => e.type === 'member-failed');
  const fpSusp = after.suspicions - base.suspicions;
  const fpDeaths = after.deaths - base.deaths;
  const fpAboutSlow = fpFailedEvents.filter((e) => e.node === SimCluster.name_(slowIdx)).length;

  // detection: crash a node that is not the slow one
  const victimIdx = Math.floor(n / 2);
  const victim = SimCluster.name_(victimIdx);
  // random phase within one probe interval
  await c.clock.run(Math.floor(rnd() * c.pools[0].memberlist.config.probeIntervalMs));
  const killAt = c.clock.monotonic();
  await c.kill(victimIdx);
  await c.clock.runUntil(() => c.countStatus(victim, 'failed') >= c.live().length, 900_000, 250);
  const det = [];
  for (const i of c.live()) {
    const e = c.events.find(
      (x) =>
        x.type === 'member-failed' &&
        x.node === victim &&
        x.observer === SimCluster.name_(i) &&
        x.at >= killAt,
    );
    if (e) det.push((e.at - killAt) / 1000);
  }
  clearTimeout(cycle);
  const simS = c.clock.monotonic() / 1000;
  await c.close();
  const cpu = process.cpuUsage(cpu0);
  return {
    n,
    lifeguard,
    convS: convMs / 1000,
    convRounds: convMs / gossipMs,
    detMedian: q(det, 0.5),
    detP99: q(det, 0.99),
    detected: det.length,
    fpSusp,
    fpDeaths,
    fpFailedViews: fpFailedEvents.length,
    fpAboutSlow,
    bytesPerNodeS,
    nodeHours: (n * windowMs) / 3_600_000,
    cpuMsPerNodeSimS: (cpu.user + cpu.system) / 1000 / n / simS,
    wallS: (performance.now() - wall0) / 1000,
    simS,
  };
}

function snapshot(c) {
  let suspicions = 0;
  let deaths = 0;
  for (const p of c.pools) {
    suspicions += p.memberlist.stats.probeFailures;
    deaths += p.memberlist.stats.deathsDeclared;
  }
  return { suspicions, deaths };
}

const rows = [];
for (const n of sizes)
  for (const lifeguard of [true, false]) {
    const r = await scenario(n, lifeguard);
    rows.push(r);
    process.stderr.write(`done N=${n} lifeguard=${lifeguard} in ${r.wallS.toFixed(1)} s wall\n`);
  }

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
console.log(
  `# gossip simulation: ${profile} profile, 10 % loss, 1 slow node, window ${windowMs / 1000} s, seed ${seed}`,
);
console.log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, node ${process.version}, ${new Date().toISOString()}`,
);
console.log('');
console.log(
  '| N | lifeguard | converge s (gossip rounds) | detection median / p99 s | false suspicions /node-h (count) | false deaths declared (count) | false failed views | bytes/node/s | CPU ms per node per sim-s |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.n} | ${r.lifeguard ? 'on' : 'off (plain SWIM)'} | ${f(r.convS)} (${f(r.convRounds, 0)}) | ${f(r.detMedian)} / ${f(r.detP99)} (${r.detected}/${r.n - 1}) | ${f(r.fpSusp / r.nodeHours)} (${r.fpSusp}) | ${r.fpDeaths} | ${r.fpFailedViews} | ${f(r.bytesPerNodeS, 0)} | ${f(r.cpuMsPerNodeSimS, 3)} |`,
  );
console.log('');
console.log('| N | FP ratio plain SWIM / Lifeguard: suspicions | deaths |');
console.log('|---|---|---|');
for (const n of sizes) {
  const on = rows.find((r) => r.n === n && r.lifeguard);
  const off = rows.find((r) => r.n === n && !r.lifeguard);
  const ratio = (a, b) => (b === 0 ? (a === 0 ? '0 / 0' : `${a} / 0 (∞)`) : `${(a / b).toFixed(1)}×`);
  console.log(`| ${n} | ${ratio(off.fpSusp, on.fpSusp)} | ${ratio(off.fpDeaths, on.fpDeaths)} |`);
}
