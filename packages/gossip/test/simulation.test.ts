// Many nodes in one process on the in-memory network with a simulated clock: convergence,
// failure detection, false positives under loss with a slow node, and a partition that heals.
// Seeded, so a failure here reproduces exactly.
import test, { type ExecutionContext } from 'ava';
import { silentLogger } from '@meshfed/core';
import {
  GatedClock,
  GossipPool,
  SimClock,
  SimCluster,
  StallGate,
  seededRandom,
  wire,
  type SimClusterOptions,
} from '../src/index.js';

/** A simulated cluster, started, joined through node 0 and checked converged within `maxMs`. */
async function convergedCluster(
  t: ExecutionContext,
  opts: SimClusterOptions,
  maxMs: number,
): Promise<SimCluster> {
  const c = new SimCluster(opts);
  await c.start();
  await c.joinAll();
  t.not(await c.clock.runUntil(() => c.converged(), maxMs), undefined, 'the cluster converged');
  return c;
}

test('50 nodes, WAN profile, 10% loss: converge, detect a crash everywhere, no false deaths', async (t) => {
  const c = new SimCluster({ n: 50, profile: 'wan', loss: 0.1, seed: 11 });
  await c.start();
  t.is(await c.joinAll(), 0, 'every join succeeded');
  const conv = await c.clock.runUntil(() => c.converged(), 120_000, 500);
  t.not(conv, undefined, 'all 50 nodes list all 50 alive');

  // a slow node: it drops everything 1.5 s out of every 3 s for two minutes
  const slow = `${SimCluster.host(7)}:7946`;
  let paused = false;
  const toggle = c.clock.setInterval(() => {
    paused = !paused;
    if (paused) c.net.paused.add(slow);
    else c.net.paused.delete(slow);
  }, 1_500);
  await c.clock.run(120_000);
  c.clock.clearInterval(toggle);
  c.net.paused.delete(slow);
  const falseDeaths = c.events.filter((e) => e.type === 'member-failed');
  t.is(falseDeaths.length, 0, `no live node declared failed: ${JSON.stringify(falseDeaths.slice(0, 3))}`);

  const killedAt = c.clock.monotonic();
  await c.kill(20);
  const victim = SimCluster.name_(20);
  const det = await c.clock.runUntil(() => c.countStatus(victim, 'failed') === 49, 400_000, 500);
  t.not(det, undefined, 'all 49 survivors mark the crashed node failed');
  const first = Math.min(
    ...c.events.filter((e) => e.type === 'member-failed' && e.node === victim).map((e) => e.at),
  );
  // WAN: probe 5 s; suspicion min 6 × log10(50) × 5 s ≈ 51 s, max 6× that; confirmations shrink it
  t.true(
    first - killedAt >= 50_000 && first - killedAt <= 320_000,
    `first detection after ${first - killedAt} ms`,
  );
  await c.close();
});

test('a partition makes each side fail the other; after healing, reconnect merges the cluster', async (t) => {
  const c = await convergedCluster(
    t,
    { n: 12, profile: 'lan', seed: 5, pool: { reconnectIntervalMs: 5_000 } },
    60_000,
  );
  const a = c.pools.slice(0, 6).map((_, i) => `${SimCluster.host(i)}:7946`);
  const b = c.pools.slice(6).map((_, i) => `${SimCluster.host(i + 6)}:7946`);
  c.net.partition([a, b]);
  const split = await c.clock.runUntil(
    () =>
      c.countStatus(SimCluster.name_(0), 'failed') === 6 &&
      c.countStatus(SimCluster.name_(11), 'failed') === 6,
    120_000,
  );
  t.not(split, undefined, 'each half marks the other failed');
  c.net.heal();
  const merged = await c.clock.runUntil(() => c.converged(), 180_000, 500);
  t.not(merged, undefined, 'the failed members were reconnected');
  await c.close();
});

test('leave propagates as left, not failed, and the event dedupe delivers each user event once', async (t) => {
  const c = new SimCluster({ n: 10, profile: 'lan', loss: 0.05, seed: 9 });
  await c.start();
  await c.joinAll();
  await c.clock.runUntil(() => c.converged(), 60_000);
  const seen = new Map<string, number>();
  for (const p of c.pools)
    p.on('user', (e) =>
      seen.set(`${p.localMember.name}:${e.name}`, (seen.get(`${p.localMember.name}:${e.name}`) ?? 0) + 1),
    );
  c.pools[3]!.userEvent('deploy', 'v2', false);
  await c.clock.run(5_000);
  t.is(seen.size, 10, 'all 10 nodes got the event');
  t.true(
    [...seen.values()].every((v) => v === 1),
    'exactly once each',
  );

  const leaving = c.pools[4]!.leave();
  await c.clock.run(8_000);
  await leaving;
  c.dead.add(4);
  t.is(c.countStatus(SimCluster.name_(4), 'left'), 9);
  t.is(c.events.filter((e) => e.type === 'member-failed').length, 0);
  await c.close();
});

test('a push-pull carrying an incompatible protocol version is not merged and is counted', async (t) => {
  const c = new SimCluster({ n: 2, profile: 'lan', seed: 2 });
  await c.start();
  const peer = c.net.transport({ host: '10.9.9.9', port: 7946 });
  await peer.listen({ packet: () => undefined, stream: () => undefined });
  const bad = (vsn: number[]) =>
    wire.encodePushPull({
      join: true,
      nodes: [
        {
          name: 'old',
          addr: Buffer.from([10, 9, 9, 9]),
          port: 7946,
          meta: Buffer.alloc(0),
          incarnation: 1,
          state: 0,
          vsn,
        },
      ],
      userState: Buffer.alloc(0),
    });
  for (const vsn of [
    [1, 5, 2, 2, 5, 1], // serf protocol 1 < every member's minimum 2
    [1, 6, 6, 2, 5, 5], // memberlist protocol 6 > every member's maximum 5
  ]) {
    const conn = await peer.dial({ host: SimCluster.host(0), port: 7946 }, 1000);
    conn.write(wire.wrapStream(bad(vsn), true, undefined));
    const reply = conn.read((b) => wire.parseStream(b, { verifyIncoming: true }), 5000);
    await c.clock.run(50);
    const msg = await reply;
    // like memberlist, the acceptor answers with its own state first, then refuses to merge
    t.is(msg.type, 'pushPull');
  }
  t.is(c.pools[0]!.memberlist.stats.streamErrors, 2);
  t.false(c.pools[0]!.members().some((m) => m.name === 'old'));
  await c.close();
  await peer.close();
});

// Lifeguard's case (Dadgar et al. 2018): one CPU-starved node whose event loop stalls for seconds
// at a time (its timers and inbound packets queue up, nothing is dropped), on a lossy network.
async function slowNodeRun(lifeguard: boolean) {
  const c = new SimCluster({
    n: 20,
    profile: 'wan',
    loss: 0.1,
    seed: 3,
    memberlist: { lifeguard },
    slow: { index: 1, stallMinMs: 1_000, stallMaxMs: 10_000, runMinMs: 1_000, runMaxMs: 10_000 },
  });
  await c.start();
  await c.joinAll();
  await c.clock.runUntil(() => c.converged(), 120_000, 500);
  const ev0 = c.events.length;
  const d0 = c.decisions.length;
  let maxHealth = 0;
  const watch = c.clock.setInterval(() => {
    maxHealth = Math.max(maxHealth, c.pools[1]!.memberlist.healthScore);
  }, 1_000);
  c.startSlow();
  await c.clock.run(300_000);
  c.stopSlow();
  c.clock.clearInterval(watch);
  const slow = SimCluster.name_(1);
  const failed = c.events.slice(ev0).filter((e) => e.type === 'member-failed');
  const dec = c.decisions.slice(d0);
  const r = {
    failedHealthy: failed.filter((e) => e.node !== slow).length,
    failedSlow: failed.filter((e) => e.node === slow).length,
    suspicionsAboutSlow: dec.filter((d) => d.kind === 'suspect' && d.node === slow).length,
    maxHealth,
    stalls: c.slowGate!.stalls,
  };
  await c.close();
  return r;
}

test("slow message processing (Lifeguard's anomaly): plain SWIM shows healthy members failed, Lifeguard does not", async (t) => {
  // One member handles every inbound message 6 s late (its timers and sends run on time), LAN
  // profile (suspicion timeout 4 s minimum at N = 10, 24 s maximum), 10 % loss, 120 s.
  const run = async (lifeguard: boolean) => {
    const c = await convergedCluster(
      t,
      {
        n: 10,
        profile: 'lan',
        loss: 0.1,
        seed: 1,
        memberlist: { lifeguard },
        delayed: { indices: [1], delayMs: 6_000 },
      },
      60_000,
    );
    const from = c.events.length;
    c.startSlow();
    await c.clock.run(120_000);
    const slow = c.anomalous();
    const failedHealthy = c.events
      .slice(from)
      .filter((e) => e.type === 'member-failed' && !slow.has(e.node)).length;
    const delayed = c.delayGates.get(1)!.delayed;
    await c.close();
    return { failedHealthy, delayed };
  };
  const swim = await run(false);
  const lifeguard = await run(true);
  t.log(`failed views of healthy members: SWIM ${swim.failedHealthy}, Lifeguard ${lifeguard.failedHealthy}`);
  t.true(swim.delayed > 100 && lifeguard.delayed > 100, 'the anomaly really delayed messages');
  t.true(
    swim.failedHealthy >= 10,
    `plain SWIM: the slow member's accusations reach everyone (${swim.failedHealthy})`,
  );
  t.is(lifeguard.failedHealthy, 0, 'Lifeguard: no healthy member is ever shown failed');
});

test('query relays: with the responder-to-querier path cut one way, the answer still arrives through others (RelayFactor)', async (t) => {
  const c = await convergedCluster(t, { n: 6, profile: 'lan', seed: 9 }, 30_000);
  for (const p of c.pools) p.on('query', (q) => q.respond(Buffer.from(`pong from ${p.localMember?.name}`)));
  // n002's packets to n000 are lost; everything else flows.
  c.net.cuts.add(`${SimCluster.host(2)}:7946>${SimCluster.host(0)}:7946`);
  const ask = async (relayFactor: number) => {
    const r = c.pools[0]!.query('ping', 'x', { relayFactor, requestAck: true });
    await c.clock.run(10_000);
    return r.done;
  };
  const direct = await ask(0);
  t.false(direct.responses.has(SimCluster.name_(2)), 'without relays the cut responder is never heard');
  t.is(direct.responses.size, 5);
  const relayed = await ask(2);
  t.is(relayed.responses.get(SimCluster.name_(2))?.toString(), 'pong from n002', 'relayed around the cut');
  t.true(relayed.acks.has(SimCluster.name_(2)), 'the ack is relayed too');
  t.is(relayed.responses.size, 6, 'every member answered, each once');
  t.true(c.pools[2]!.stats.relaysSent >= 4, `relays sent by n002: ${c.pools[2]!.stats.relaysSent}`);
  t.throws(() => c.pools[0]!.query('ping', 'x', { relayFactor: 9 }), { message: /relayFactor must be/ });
  await c.close();
});

test('name conflict: a second node under an existing name loses the majority vote and leaves; the owner stays', async (t) => {
  const c = await convergedCluster(t, { n: 5, profile: 'lan', seed: 4 }, 30_000);
  const addr = { host: '10.0.9.9', port: 7946 };
  const impostor = new GossipPool(
    { nodeName: SimCluster.name_(1), advertise: addr, profile: 'lan' },
    { logger: silentLogger, clock: c.clock, transport: c.net.transport(addr), random: seededRandom(42) },
  );
  const lost: { matching: number; responses: number }[] = [];
  let ownerLost = false;
  impostor.on('name-conflict-lost', (e) => lost.push(e));
  c.pools[1]!.on('name-conflict-lost', () => (ownerLost = true));
  await impostor.start();
  void impostor.join([`${SimCluster.host(0)}:7946`]).catch(() => undefined);
  t.not(await c.clock.runUntil(() => lost.length > 0, 60_000), undefined, 'the impostor gave up');
  t.true(lost[0]!.responses >= 3 && lost[0]!.matching === 0, JSON.stringify(lost[0]));
  await c.clock.run(10_000);
  t.false(ownerLost, 'the owner kept its name');
  t.is(c.countStatus(SimCluster.name_(1), 'alive'), 5, 'everyone still sees the owner alive');
  t.true(
    c.pools[0]!.members().some((m) => m.name === SimCluster.name_(1) && m.addr === SimCluster.host(1)),
    'at its own address',
  );
  await impostor.close();
  await c.close();
});

test('a member whose every peer is dead keeps probing at the probe interval, without spinning', async (t) => {
  const c = await convergedCluster(t, { n: 3, profile: 'lan', seed: 3 }, 30_000);
  await c.kill(1);
  await c.kill(2);
  t.not(await c.clock.runUntil(() => c.countStatus(SimCluster.name_(1), 'failed') === 1, 60_000), undefined);
  t.not(await c.clock.runUntil(() => c.countStatus(SimCluster.name_(2), 'failed') === 1, 60_000), undefined);
  const fired = c.clock.fired;
  await c.clock.run(60_000); // spun forever at 0 ms per probe before the fix
  t.true(c.clock.fired - fired < 2_000, `timers fired in 60 s alone: ${c.clock.fired - fired}`);
  await c.close();
});

test('a CPU-starved node on a lossy WAN: suspected, never failed; no healthy node shown failed; Lifeguard raises its local health', async (t) => {
  for (const lifeguard of [false, true]) {
    const r = await slowNodeRun(lifeguard);
    const mode = lifeguard ? 'Lifeguard' : 'plain SWIM';
    t.log(`${mode}: ${JSON.stringify(r)}`);
    t.true(r.stalls > 20, `${mode}: the slow node really stalled, many times (${r.stalls})`);
    t.true(
      r.suspicionsAboutSlow > 0,
      `${mode}: its stalls were noticed (suspected ${r.suspicionsAboutSlow}×)`,
    );
    t.is(r.failedSlow, 0, `${mode}: the slow node refuted every suspicion in time`);
    t.is(r.failedHealthy, 0, `${mode}: no healthy node is ever shown failed`);
    if (lifeguard)
      t.true(r.maxHealth >= 1, `the slow node's local health multiplier rose (max ${r.maxHealth})`);
    else t.is(r.maxHealth, 0, 'plain SWIM has no local health');
  }
});

test('a stalled node queues its timers and packets and, when it resumes, fires timers before reading I/O', async (t) => {
  const clock = new SimClock();
  const gate = new StallGate(clock, {
    stallMinMs: 1_000,
    stallMaxMs: 1_000,
    runMinMs: 100,
    runMaxMs: 100,
    random: seededRandom(1),
  });
  const gated = new GatedClock(clock, gate);
  const order: string[] = [];
  gate.start();
  await clock.run(150); // stalled from t = 100 to t = 1100
  t.true(gate.stalled());
  gated.setTimeout(() => order.push(`timer@${clock.monotonic()}`), 100);
  gate.io(() => order.push(`io@${clock.monotonic()}`));
  await clock.run(900);
  t.deepEqual(order, [], 'nothing ran during the stall');
  await clock.run(100);
  t.deepEqual(order, ['timer@1100', 'io@1101'], 'timers first, then the queued packet, nothing lost');
  gate.stop();
});

test('user-event coalescing: a burst of coalescable events delivers only the newest per name, once the period passes', async (t) => {
  const c = await convergedCluster(
    t,
    {
      n: 5,
      profile: 'lan',
      seed: 4,
      pool: { userCoalescePeriodMs: 3_000, userQuiescentPeriodMs: 1_000 },
    },
    60_000,
  );
  const got = new Map<string, string[]>();
  for (const p of c.pools)
    p.on('user', (e) => {
      const k = p.localMember.name;
      got.set(k, [...(got.get(k) ?? []), `${e.name}=${e.payload.toString()}`]);
    });
  // a deploy burst: v1..v5 coalescable 200 ms apart, plus one that must not be coalesced
  for (let v = 1; v <= 5; v++) {
    c.pools[0]!.userEvent('deploy', `v${v}`, true);
    await c.clock.run(200);
  }
  c.pools[2]!.userEvent('alarm', 'now', false);
  const alarmed = () => [...got.values()].filter((evs) => evs.includes('alarm=now')).length === 5;
  t.not(await c.clock.runUntil(alarmed, 700, 50), undefined, 'the non-coalesced event reached all 5 at once');
  t.true(
    [...got.values()].every((evs) => !evs.some((e) => e.startsWith('deploy'))),
    'nothing coalescable delivered inside the period',
  );
  t.is(
    [...got.values()].filter((evs) => evs.includes('alarm=now')).length,
    5,
    'the non-coalesced event is immediate',
  );
  await c.clock.run(5_000);
  for (let i = 0; i < 5; i++)
    t.deepEqual(
      got.get(SimCluster.name_(i)),
      ['alarm=now', 'deploy=v5'],
      `${SimCluster.name_(i)} sees only v5`,
    );
  await c.close();
});

test('user-event coalescing rejects a negative period with a clear error', (t) => {
  const c = new SimCluster({ n: 1, profile: 'lan', pool: { userCoalescePeriodMs: -1 } });
  return c.start().then(
    () => t.fail('should have thrown'),
    (err: { code?: string }) => t.is(err.code, 'MESH_ERR_CONFIG_INVALID'),
  );
});
