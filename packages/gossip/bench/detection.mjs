#!/usr/bin/env node
// Simulated-cluster benchmark (not a test): N = 10/50/200 on the in-memory network with the WAN
// profile, 10 % packet loss and one slow node, Lifeguard on vs off ("plain SWIM": no local health,
// fixed minimum suspicion timeout, no confirmations). Prints convergence, detection median/p99,
// false suspicions/deaths (raised BY the slow node, ABOUT it, and among the others), bytes/node/s
// and CPU; with several seeds, the median of each number. Run after `npm run build`:
//   node packages/gossip/bench/detection.mjs [--sizes 10,50,200] [--window-s 300] [--seeds 1,2,3]
//        [--slow stall|drop|delay] [--stall-scale 5] [--delay-ms 5000] [--slow-count 1]
//        [--profile wan|lan] [--loss 0.1]
// --slow stall (default): Lifeguard's slow node, a CPU-starved event loop: it stalls for
//   U(0.2, 2) s × scale, runs U(0.2, 2) s × scale, and so on; while stalled its timers and inbound
//   traffic queue up (nothing is dropped), then timers fire first and the queued I/O is read after.
//   scale defaults to probeInterval / 1 s (5 for WAN: its timings are 5× LAN's).
// --slow drop: the old model, the node's traffic is dropped 0.75–2.25 s on / off (a partition flap).
// --slow delay: the Lifeguard paper's anomaly, slow message processing: --slow-count members handle
//   every inbound message --delay-ms late (in order) during the window; their timers and sends are
//   unaffected, so their acks, nacks and the refutations they need arrive late.
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { SimCluster, seededRandom } from '../dist/src/index.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const sizes = arg('sizes', '10,50,200').split(',').map(Number);
const windowMs = Number(arg('window-s', '300')) * 1000;
const seeds = arg('seeds', arg('seed', '1,2,3')).split(',').map(Number);
const profile = arg('profile', 'wan');
const slowModel = arg('slow', 'stall');
const delayMs = Number(arg('delay-ms', '5000'));
const slowCount = Number(arg('slow-count', '1'));
const loss = Number(arg('loss', '0.1'));

const q = (xs, p) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
};

async function scenario(n, lifeguard, seed) {
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  const slowIdx = 1;
  const probeMs = { lan: 1000, wan: 5000, local: 1000 }[profile];
  const scale = Number(arg('stall-scale', String(probeMs / 1000)));
  const slowOpt =
    slowModel === 'stall'
      ? {
          index: slowIdx,
          stallMinMs: 200 * scale,
          stallMaxMs: 2000 * scale,
          runMinMs: 200 * scale,
          runMaxMs: 2000 * scale,
        }
      : undefined;
  // anomalous members: 1, then spread over the cluster (never the seed 0 or the crash victim n/2)
  const delayedIdx = Array.from({ length: slowCount }, (_, k) => 1 + Math.floor((k * n) / slowCount)).map(
    (i) => (i === Math.floor(n / 2) ? i + 1 : i),
  );
  const c = new SimCluster({
    n,
    profile,
    loss,
    seed,
    memberlist: { lifeguard },
    slow: slowOpt,
    ...(slowModel === 'delay' ? { delayed: { indices: delayedIdx, delayMs } } : {}),
  });
  await c.start();
  const t0 = c.clock.monotonic();
  await c.joinAll();
  const conv = await c.clock.runUntil(() => c.converged(), 600_000, 250);
  const convMs = conv === undefined ? NaN : c.clock.monotonic() - t0 - 0; // includes the staggered joins
  const gossipMs = c.pools[0].memberlist.config.gossipIntervalMs;

  // false-positive window: 10 % loss plus the slow node
  const slow = `${SimCluster.host(slowIdx)}:7946`;
  const slowNames = c.anomalous();
  const rnd = seededRandom(seed + 99);
  let stopped = false;
  let cycle;
  const flip = () => {
    stopped = !stopped;
    if (stopped) c.net.paused.add(slow);
    else c.net.paused.delete(slow);
    cycle = c.clock.setTimeout(flip, 750 + rnd() * 1500);
  };
  if (slowModel === 'drop') flip();
  else c.startSlow();
  const dec0 = c.decisions.length;
  const base = snapshot(c);
  const bytes0 = c.net.bytes;
  const ev0 = c.events.length;
  await c.clock.run(windowMs);
  const after = snapshot(c);
  const bytesPerNodeS = (c.net.bytes - bytes0) / n / (windowMs / 1000);
  const fpFailedEvents = c.events.slice(ev0).filter((e) => e.type === 'member-failed');
  const fpSusp = after.suspicions - base.suspicions;
  const fpDeaths = after.deaths - base.deaths;
  const fpAboutSlow = fpFailedEvents.filter((e) => slowNames.has(e.node)).length;
  const dec = c.decisions.slice(dec0);
  const split = (kind) => {
    const d = dec.filter((x) => x.kind === kind);
    return {
      by: d.filter((x) => slowNames.has(x.by)).length,
      about: d.filter((x) => slowNames.has(x.node)).length,
      others: d.filter((x) => !slowNames.has(x.by) && !slowNames.has(x.node)).length,
    };
  };
  const suspSplit = split('suspect');
  const deathSplit = split('dead');
  // the user-visible harm: a healthy node other than the slow one shown failed somewhere
  const fpFailedHealthy = fpFailedEvents.filter((e) => !slowNames.has(e.node)).length;
  // ... and seen by a healthy member (an anomalous member's own view is not what users read)
  const fpFailedHealthyAtHealthy = fpFailedEvents.filter(
    (e) => !slowNames.has(e.node) && !slowNames.has(e.observer),
  ).length;
  const stall = c.slowGate ? { stalls: c.slowGate.stalls, stalledMs: c.slowGate.stalledMs } : undefined;
  c.stopSlow();
  c.net.paused.delete(slow);

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
  c.clock.clearTimeout(cycle);
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
    fpFailedHealthy,
    fpFailedHealthyAtHealthy,
    suspSplit,
    deathSplit,
    stall,
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

const med = (xs) => q(xs, 0.5);
const rows = [];
for (const n of sizes)
  for (const lifeguard of [true, false]) {
    const runs = [];
    for (const seed of seeds) {
      const r = await scenario(n, lifeguard, seed);
      runs.push(r);
      process.stderr.write(
        `done N=${n} lifeguard=${lifeguard} seed=${seed} in ${r.wallS.toFixed(1)} s wall: ` +
          `susp by/about/others ${r.suspSplit.by}/${r.suspSplit.about}/${r.suspSplit.others}, ` +
          `deaths ${r.deathSplit.by}/${r.deathSplit.about}/${r.deathSplit.others}, ` +
          `failed views of healthy ${r.fpFailedHealthy} (at healthy ${r.fpFailedHealthyAtHealthy}), det ${r.detMedian}\n`,
      );
    }
    const m = (f) => med(runs.map(f));
    rows.push({
      n,
      lifeguard,
      runs,
      convS: m((r) => r.convS),
      convRounds: m((r) => r.convRounds),
      detMedian: m((r) => r.detMedian),
      detP99: m((r) => r.detP99),
      detected: m((r) => r.detected),
      fpSusp: m((r) => r.fpSusp),
      fpDeaths: m((r) => r.fpDeaths),
      fpFailedViews: m((r) => r.fpFailedViews),
      fpFailedHealthy: m((r) => r.fpFailedHealthy),
      fpFailedHealthyAtHealthy: m((r) => r.fpFailedHealthyAtHealthy),
      sBy: m((r) => r.suspSplit.by),
      sAbout: m((r) => r.suspSplit.about),
      sOthers: m((r) => r.suspSplit.others),
      dBy: m((r) => r.deathSplit.by),
      dAbout: m((r) => r.deathSplit.about),
      dOthers: m((r) => r.deathSplit.others),
      bytesPerNodeS: m((r) => r.bytesPerNodeS),
      nodeHours: runs[0].nodeHours,
      cpuMsPerNodeSimS: m((r) => r.cpuMsPerNodeSimS),
    });
  }

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
console.log(
  `# gossip simulation: ${profile} profile, ${loss * 100} % loss, ${slowModel === 'delay' ? `${slowCount} member(s) with ${delayMs} ms message-processing delay` : `1 slow node (${slowModel})`}, window ${windowMs / 1000} s, seeds ${seeds.join(',')} (medians)`,
);
console.log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, node ${process.version}, ${new Date().toISOString()}`,
);
console.log('');
console.log(
  '| N | lifeguard | converge s (rounds) | detection median / p99 s (detected) | false suspicions: total /node-h (count) · by slow / about slow / others | false deaths declared: total · by slow / about slow / others | failed views: all / of healthy nodes / of healthy nodes at healthy nodes | bytes/node/s | CPU ms/node/sim-s |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.n} | ${r.lifeguard ? 'on' : 'off (SWIM)'} | ${f(r.convS)} (${f(r.convRounds, 0)}) | ${f(r.detMedian)} / ${f(r.detP99)} (${r.detected}/${r.n - 1}) | ${f(r.fpSusp / r.nodeHours)} (${r.fpSusp}) · ${r.sBy} / ${r.sAbout} / ${r.sOthers} | ${r.fpDeaths} · ${r.dBy} / ${r.dAbout} / ${r.dOthers} | ${r.fpFailedViews} / ${r.fpFailedHealthy} / ${r.fpFailedHealthyAtHealthy} | ${f(r.bytesPerNodeS, 0)} | ${f(r.cpuMsPerNodeSimS, 3)} |`,
  );
console.log('');
console.log(
  '| N | SWIM / Lifeguard (medians): false suspicions | false deaths | failed views of healthy nodes | … at healthy nodes |',
);
console.log('|---|---|---|---|---|');
const ratio = (a, b) =>
  b === 0 ? (a === 0 ? '0 / 0' : `${a} / 0 (∞)`) : `${(a / b).toFixed(1)}× (${a} / ${b})`;
for (const n of sizes) {
  const on = rows.find((r) => r.n === n && r.lifeguard);
  const off = rows.find((r) => r.n === n && !r.lifeguard);
  console.log(
    `| ${n} | ${ratio(off.fpSusp, on.fpSusp)} | ${ratio(off.fpDeaths, on.fpDeaths)} | ${ratio(off.fpFailedHealthy, on.fpFailedHealthy)} | ${ratio(off.fpFailedHealthyAtHealthy, on.fpFailedHealthyAtHealthy)} |`,
  );
}
