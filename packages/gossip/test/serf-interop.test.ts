// Interop against Debian's real `serf` agent (apt-get install serf; v0.8.2-dev, protocol 5): the
// independent judge for wire compatibility. Agents bind 127.0.0.1 on free ports, are bounded by
// timeout(1) and stopped by PID. Real time, generous bounds: the machine is shared.
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { silentLogger, systemClock } from '@meshfed/core';
import { freePort, tempDir, waitFor } from '@meshfed/testkit';
import { GossipPool, keygen, type GossipPoolOptions, type Member } from '../src/index.js';

const run = promisify(execFile);

interface Agent {
  proc: ChildProcess;
  port: number;
  rpc: string;
  log(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

async function startAgent(
  t: { teardown(fn: () => unknown): void },
  dir: string,
  name: string,
  extra: string[] = [],
): Promise<Agent> {
  const port = await freePort();
  const rpcPort = await freePort();
  const rpc = `127.0.0.1:${rpcPort}`;
  const logFile = join(dir, `${name}.log`);
  const out = openSync(logFile, 'a');
  // timeout(1) bounds the agent even if this worker dies; we signal the serf process itself by
  // PID (a signal to timeout is not reliably passed on, and SIGKILL to it would orphan serf).
  const args = [
    '-s',
    'KILL',
    '90',
    'serf',
    'agent',
    `-node=${name}`,
    `-bind=127.0.0.1:${port}`,
    `-rpc-addr=${rpc}`,
  ];
  const proc = spawn('timeout', [...args, '-log-level=debug', ...extra], { stdio: ['ignore', out, out] });
  closeSync(out);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const agentPid: { serf?: number } = {};
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    if (agentPid.serf === undefined) proc.kill('SIGTERM');
    else process.kill(agentPid.serf, signal);
    const late = setTimeout(() => {
      if (agentPid.serf !== undefined) process.kill(agentPid.serf, 'SIGKILL');
    }, 10_000);
    await exited;
    clearTimeout(late);
  };
  t.teardown(() => stop('SIGTERM'));
  await waitFor(async () => (await run('serf', ['members', `-rpc-addr=${rpc}`])).stdout.includes(name), {
    timeoutMs: 15_000,
    what: `serf agent ${name} RPC`,
  });
  agentPid.serf = Number((await run('pgrep', ['-P', String(proc.pid)])).stdout.trim().split('\n')[0]);
  if (!Number.isInteger(agentPid.serf) || agentPid.serf <= 0)
    throw new Error('could not find the serf agent PID');
  return { proc, port, rpc, log: () => readFileSync(logFile, 'utf8'), stop };
}

async function serf(args: string[]): Promise<string> {
  const { stdout } = await run('serf', args, { timeout: 20_000 });
  return stdout;
}

async function agentSees(agent: Agent, node: string, status: string): Promise<string> {
  return waitFor(
    async () => {
      const out = await serf(['members', `-rpc-addr=${agent.rpc}`, '-detailed']);
      const line = out.split('\n').find((l) => l.trim().startsWith(`${node} `));
      return line && line.includes(` ${status} `) ? line : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, what: `agent to list ${node} as ${status}` },
  );
}

async function ours(
  t: { teardown(fn: () => unknown): void },
  opts: Partial<GossipPoolOptions> & { nodeName: string },
): Promise<GossipPool> {
  const pool = new GossipPool(
    { bindAddr: '127.0.0.1', bindPort: await freePort(), ...opts },
    { logger: silentLogger, clock: systemClock },
  );
  t.teardown(() => pool.close());
  await pool.start();
  return pool;
}

const memberIs = (p: GossipPool, name: string, status: Member['status']): boolean =>
  p.members().some((m) => m.name === name && m.status === status);

test.serial(
  'join, tags, user events and queries work both ways with a serf agent; our leave shows left',
  async (t) => {
    const dir = tempDir(t);
    const agent = await startAgent(t, dir, 'agent-a', [
      '-event-handler',
      'query:whoami=echo pong-from-agent',
    ]);
    const pool = await ours(t, { nodeName: 'ts-a', tags: { role: 'gossip-ts', dc: 'dc1' } });
    const got: string[] = [];
    pool.on('user', (e) => got.push(`${e.name}=${e.payload.toString()}`));
    pool.on('query', (q) => q.respond(Buffer.from(`pong from ${pool.localMember.name}`)));
    t.is(await pool.join([`127.0.0.1:${agent.port}`]), 1);

    const line = await agentSees(agent, 'ts-a', 'alive');
    t.regex(line, /dc=dc1,role=gossip-ts|role=gossip-ts,dc=dc1/);
    t.regex(line, /Protocol Version: 5/);
    t.true(memberIs(pool, 'agent-a', 'alive'));

    // events both ways
    await serf(['event', `-rpc-addr=${agent.rpc}`, 'deploy', 'v1.2.3']);
    await waitFor(() => got.includes('deploy=v1.2.3'), { what: 'the agent event to reach us' });
    pool.userEvent('ts-event', 'hello', false);
    await waitFor(() => agent.log().includes('Received event: user-event: ts-event'), {
      what: 'our event at the agent',
    });

    // queries both ways
    const out = await serf(['query', `-rpc-addr=${agent.rpc}`, '-timeout=3s', 'whoami', 'x']);
    t.regex(out, /Response from 'ts-a': pong from ts-a/);
    t.regex(out, /Ack from 'ts-a'/);
    const q = pool.query('whoami', 'x', { requestAck: true, timeoutMs: 3000 });
    const res = await q.done;
    t.true(res.acks.has('agent-a'));
    t.regex(res.responses.get('agent-a')?.toString() ?? '', /pong-from-agent/);
    t.is(res.responses.get('ts-a')?.toString(), 'pong from ts-a');

    // tags both ways
    const updates: string[] = [];
    pool.on('member-update', (m) => updates.push(`${m.name}:${JSON.stringify(m.tags)}`));
    await serf(['tags', `-rpc-addr=${agent.rpc}`, '-set', 'team=core']);
    await waitFor(() => pool.members().find((m) => m.name === 'agent-a')?.tags['team'] === 'core', {
      what: 'the agent tag update',
    });
    t.true(updates.some((u) => u.startsWith('agent-a:')));
    await pool.setTags({ role: 'gossip-ts', dc: 'dc2' });
    await waitFor(async () => (await agentSees(agent, 'ts-a', 'alive')).includes('dc=dc2'), {
      what: 'our tag update',
    });

    // the agent answered our probes (ping/ack over UDP, LZW-compressed compound replies)
    t.true(pool.memberlist.stats.probes > 0);
    t.is(pool.memberlist.stats.probeFailures, 0);

    // graceful leave
    await pool.leave();
    await agentSees(agent, 'ts-a', 'left');
    t.regex(agent.log(), /EventMemberLeave: ts-a/);
    t.notRegex(agent.log(), /EventMemberLeave \(forced\): ts-a/);
  },
);

test.serial(
  'agent dials us; a graceful agent leave shows left; a killed agent is declared failed',
  async (t) => {
    const dir = tempDir(t);
    const a = await startAgent(t, dir, 'agent-b');
    const b = await startAgent(t, dir, 'agent-c');
    const pool = await ours(t, { nodeName: 'ts-b', profile: 'local' });
    const out = await serf(['join', `-rpc-addr=${a.rpc}`, `127.0.0.1:${pool.address.port}`]);
    t.regex(out, /Successfully joined cluster by contacting 1 nodes/);
    await serf(['join', `-rpc-addr=${b.rpc}`, `127.0.0.1:${a.port}`]);
    await waitFor(() => memberIs(pool, 'agent-b', 'alive') && memberIs(pool, 'agent-c', 'alive'), {
      what: 'both agents alive in our view',
    });
    await agentSees(b, 'ts-b', 'alive');

    await a.stop('SIGINT'); // graceful leave
    await waitFor(() => memberIs(pool, 'agent-b', 'left'), { timeoutMs: 20_000, what: 'agent-b left' });

    await b.stop('SIGTERM'); // no leave: must be detected
    await waitFor(() => memberIs(pool, 'agent-c', 'failed'), { timeoutMs: 30_000, what: 'agent-c failed' });
    t.true(pool.memberlist.stats.suspicionsRaised >= 1);
  },
);

test.serial(
  'our crash is seen as failed, force-leave makes it left; restarting under the same name refutes back to alive',
  async (t) => {
    const dir = tempDir(t);
    const agent = await startAgent(t, dir, 'agent-d');
    const port = await freePort();
    const first = await ours(t, { nodeName: 'ts-c', bindPort: port });
    await first.join([`127.0.0.1:${agent.port}`]);
    await agentSees(agent, 'ts-c', 'alive');
    await first.close(); // crash: no leave
    await agentSees(agent, 'ts-c', 'failed');
    t.regex(agent.log(), /EventMemberFailed: ts-c/);
    await serf(['force-leave', `-rpc-addr=${agent.rpc}`, 'ts-c']);
    await agentSees(agent, 'ts-c', 'left');
    const second = await ours(t, { nodeName: 'ts-c', bindPort: port });
    await second.join([`127.0.0.1:${agent.port}`]);
    await agentSees(agent, 'ts-c', 'alive');
    t.true(second.memberlist.stats.refutes >= 1, 'the old incarnation was refuted');
  },
);

test.serial(
  'encryption: right key joins, wrong key is rejected and counted; serf keys rotation includes us',
  async (t) => {
    const dir = tempDir(t);
    const k1 = keygen();
    const k2 = keygen();
    const agent = await startAgent(t, dir, 'agent-e', ['-encrypt', k1, '-profile', 'wan']);
    const pool = await ours(t, { nodeName: 'ts-e', keys: [k1], profile: 'wan' });
    await pool.join([`127.0.0.1:${agent.port}`]);
    await agentSees(agent, 'ts-e', 'alive');

    const intruder = await ours(t, { nodeName: 'ts-wrong', keys: [keygen()], profile: 'wan' });
    await t.throwsAsync(() => intruder.join([`127.0.0.1:${agent.port}`]), { message: /could not join/ });
    const plain = await ours(t, { nodeName: 'ts-plain', profile: 'wan' });
    await t.throwsAsync(() => plain.join([`127.0.0.1:${agent.port}`]), { message: /could not join/ });

    for (const args of [
      ['-install', k2],
      ['-use', k2],
      ['-remove', k1],
    ]) {
      const out = await serf(['keys', `-rpc-addr=${agent.rpc}`, ...args]);
      t.regex(out, /Successfully/, `serf keys ${args[0]}`);
    }
    const list = await serf(['keys', `-rpc-addr=${agent.rpc}`, '-list']);
    t.true(
      list.split('\n').some((l) => l.includes(k2) && l.includes('[2/2]')),
      list,
    );
    t.false(list.includes(k1));
    // still talking under the new key: an event from the agent reaches us
    const got = new Promise<string>((r) => pool.on('user', (e) => r(e.name)));
    await serf(['event', `-rpc-addr=${agent.rpc}`, 'after-rotation']);
    t.is(await got, 'after-rotation');
    const ours2 = await pool.keys.list();
    t.deepEqual(Object.keys(ours2.primaryKeys), [k2]);
  },
);

test.serial(
  'a 3-agent cluster with us inside converges, with compression off on our side and one agent; query relays both ways',
  async (t) => {
    const dir = tempDir(t);
    const handler = ['-event-handler', 'query:whoami=echo pong-from-agent'];
    const a = await startAgent(t, dir, 'agent-f', handler);
    const b = await startAgent(t, dir, 'agent-g', ['-disable-compression', ...handler]);
    const c = await startAgent(t, dir, 'agent-h', handler);
    await serf(['join', `-rpc-addr=${b.rpc}`, `127.0.0.1:${a.port}`]);
    await serf(['join', `-rpc-addr=${c.rpc}`, `127.0.0.1:${a.port}`]);
    const pool = await ours(t, { nodeName: 'ts-f', memberlist: { enableCompression: false } });
    await pool.join([`127.0.0.1:${b.port}`]);
    for (const agent of [a, b, c]) await agentSees(agent, 'ts-f', 'alive');
    await waitFor(() => ['agent-f', 'agent-g', 'agent-h'].every((n) => memberIs(pool, n, 'alive')), {
      what: 'we see all three agents',
    });
    // an event from one agent reaches us through the gossip of the others
    const got = new Promise<string>((r) => pool.on('user', (e) => r(e.name)));
    await serf(['event', `-rpc-addr=${c.rpc}`, 'from-h']);
    t.is(await got, 'from-h');
    // query relays: the agents relay their answers to our query through other members (maybe us),
    // and ours to theirs through the agents, which must parse and forward our relay messages
    pool.on('query', (q) => q.respond(Buffer.from('pong from ts-f')));
    const q = pool.query('whoami', 'x', { requestAck: true, relayFactor: 2, timeoutMs: 3000 });
    const res = await q.done;
    for (const n of ['agent-f', 'agent-g', 'agent-h']) {
      t.true(res.acks.has(n), `ack from ${n}`);
      t.regex(res.responses.get(n)?.toString() ?? '', /pong-from-agent/);
    }
    const out = await serf(['query', `-rpc-addr=${a.rpc}`, '-relay-factor=2', '-timeout=3s', 'whoami', 'x']);
    t.regex(out, /Response from 'ts-f': pong from ts-f/);
    // agent-f logs every copy it receives: our direct ack and response plus the relayed copies that
    // the other agents decoded from our relay messages and forwarded
    const copies = a.log().match(/messageQueryResponseType: ts-f/g)?.length ?? 0;
    t.true(copies > 2, `agent-f received relayed copies of our answers (${copies} messages)`);
    t.true(pool.stats.relaysSent >= 4, `we relayed our ack and response (${pool.stats.relaysSent})`);
    for (const agent of [a, b, c]) t.notRegex(agent.log(), /ERR.*(relay|decod)/i);
    t.is(pool.stats.messagesMalformed, 0);
    await c.stop('SIGTERM');
    await waitFor(() => memberIs(pool, 'agent-h', 'failed'), {
      timeoutMs: 30_000,
      what: 'agent-h failed in our view',
    });
    await agentSees(a, 'agent-h', 'failed');
  },
);
