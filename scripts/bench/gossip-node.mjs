#!/usr/bin/env node
// One @meshfed/gossip node for the shared gossip harness (/work/shared/bench/gossip): serf-agent-like
// flags, members.json kept in --state-dir, and one JSON line per membership event on stdout in the
// harness's normalised vocabulary (member_alive, member_failed, member_left, suspect, declare_failed,
// refute_suspect, refute_dead). Build first (npm run build).
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '@meshfed/core';
import { GossipPool, parseHostPort } from '@meshfed/gossip';

const argv = process.argv.slice(2);
if (argv.includes('--version')) {
  console.log('@meshfed/gossip 0.1.0 (memberlist protocol 2 [1,5], serf protocol 5)');
  process.exit(0);
}
const opt = (k, d) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1] : d;
};
const joins = argv.flatMap((a, i) => (a === '--join' ? [argv[i + 1]] : []));
const name = opt('name');
const bind = parseHostPort(opt('bind', '127.0.0.1:7946'));
const stateDir = opt('state-dir', '.');
mkdirSync(stateDir, { recursive: true });

const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
// memberlist's log lines → harness events
const mk = (level) => (a, b) => {
  const obj = typeof a === 'object' ? a : {};
  const msg = typeof a === 'string' ? a : (b ?? '');
  if (msg.startsWith('suspect node has failed')) out({ event: 'suspect', node: obj.node });
  else if (msg.startsWith('marking node as failed')) out({ event: 'declare_failed', node: obj.node });
  else if (msg.startsWith('refuting a suspect')) out({ event: 'refute_suspect', node: name, from: obj.from });
  else if (msg.startsWith('refuting a dead')) out({ event: 'refute_dead', node: name, from: obj.from });
  else if (level >= 40) process.stderr.write(`${JSON.stringify({ level, msg, ...obj })}\n`);
};
const logger = {
  trace: mk(10),
  debug: mk(20),
  info: mk(30),
  warn: mk(40),
  error: mk(50),
  fatal: mk(60),
  child: () => logger,
  isLevelEnabled: () => true,
};

const pool = new GossipPool(
  { nodeName: name, bindAddr: bind.host, bindPort: bind.port, profile: opt('profile', 'lan') },
  { logger, clock: systemClock },
);
const dump = () => {
  const tmp = join(stateDir, 'members.json.tmp');
  writeFileSync(
    tmp,
    JSON.stringify({
      members: pool.members().map((m) => ({ name: m.name, addr: `${m.addr}:${m.port}`, status: m.status })),
    }),
  );
  renameSync(tmp, join(stateDir, 'members.json'));
};
pool.on('member-join', (m) => (out({ event: 'member_alive', node: m.name }), dump()));
pool.on('member-failed', (m) => (out({ event: 'member_failed', node: m.name }), dump()));
pool.on('member-leave', (m) => (out({ event: 'member_left', node: m.name }), dump()));
pool.on('member-update', dump);
pool.on('member-reap', dump);
await pool.start();
dump();
// retry-join, as the harness uses for serf: under loss the first push/pull may fail
for (let attempt = 0; joins.length > 0; attempt++) {
  try {
    await pool.join(joins);
    break;
  } catch {
    await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt)));
  }
}
const stop = async (sig) => {
  if (sig === 'SIGINT') await pool.leave();
  await pool.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
