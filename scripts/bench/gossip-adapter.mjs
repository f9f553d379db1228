// Adapter for /work/shared/bench/gossip (see its README, "Adapter contract"): runs
// scripts/bench/gossip-node.mjs. Use: cd <copy of the harness> && ./run.sh --impl serf,/work/<repo>/scripts/bench/gossip-adapter.mjs
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ENTRY = join(dirname(fileURLToPath(import.meta.url)), 'gossip-node.mjs');

export default {
  name: 'meshfed',
  async describe(ctx) {
    const r = await ctx.execHost(['node', ENTRY, '--version']);
    return r.code === 0 ? r.stdout.trim() : `unknown (${ENTRY})`;
  },
  start(node, ctx) {
    const argv = [
      'node',
      ENTRY,
      '--name',
      node.name,
      '--bind',
      node.bindAddr,
      '--profile',
      node.profile,
      '--state-dir',
      node.workDir,
    ];
    for (const j of node.join) argv.push('--join', j);
    return ctx.spawn(node, argv);
  },
  async members(node) {
    const j = JSON.parse(await readFile(join(node.workDir, 'members.json'), 'utf8'));
    return j.members.map((m) => ({ name: m.name, addr: m.addr, status: m.status }));
  },
  parseLine(line) {
    if (!line.startsWith('{')) return null;
    try {
      const j = JSON.parse(line);
      return j.event ? { type: j.event, subj: j.node, from: j.from } : null;
    } catch {
      return null;
    }
  },
};
