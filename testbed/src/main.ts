// `npm start` / `npm run testbed -- <up|down|status>`: the multi-DC demo on this machine.
//
//   up      start dc1 (primary), dc2 and dc3 from configs/, join them, start gateways, apps and
//           sidecars, wait until the dashboard's call crosses the gateways, print where to look;
//           Ctrl-C stops every process.
//   down    stop the processes a running `up` (in another shell) started.
//   status  federation status and WAN members of a running testbed.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { stopRecorded } from './process-group.js';
import { Testbed, type ProgressEvent } from './testbed.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    config: { type: 'string', multiple: true },
    entry: { type: 'string', multiple: true },
    'work-dir': { type: 'string' },
    dcs: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

const command = positionals[0] ?? 'up';
const workDir = resolve(values['work-dir'] ?? '.testbed');
const dcCount = Number(values.dcs ?? 3);
const configs =
  values.config ?? ['configs/dc1.yaml', 'configs/dc2.yaml', 'configs/dc3.yaml'].slice(0, dcCount);
const entries = values.entry ?? [
  'configs/entries/counting-intentions.yaml',
  'configs/entries/counting-resolver.yaml',
];

if (values.help) {
  console.log(`usage: npm run testbed -- <up|down|status> [--config dcN.yaml ...] [--entry file ...]
       [--dcs N] [--work-dir DIR]   (default: configs/dc1..3.yaml, work dir .testbed/)`);
  process.exit(0);
}

function printProgress(e: ProgressEvent): void {
  if (e.kind === 'step') process.stdout.write(`[${e.step}/${e.total}] ${e.title} ... `);
  else console.log(`done in ${(e.ms / 1000).toFixed(1)} s${e.detail ? ` (${e.detail})` : ''}`);
}

async function up(): Promise<number> {
  for (const f of configs) {
    if (!existsSync(f)) {
      console.error(`config ${f} not found; run from the repository root or pass --config`);
      return 2;
    }
  }
  const tb = new Testbed({ configFiles: configs, entryFiles: entries, workDir, progress: printProgress });
  const ac = new AbortController();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping every process ...');
    ac.abort();
    await tb.down();
    console.log('stopped; logs kept in', join(workDir, 'logs'));
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  console.log(
    `meshfed testbed: ${tb.dcs.map((d) => d.config.datacenter).join(', ')} (logs: ${join(workDir, 'logs')})`,
  );
  try {
    await tb.up(ac.signal);
  } catch (err) {
    if (stopping) return 0;
    console.error(`\nthe testbed did not come up: ${(err as Error).message}`);
    console.error(`logs: ${join(workDir, 'logs')}`);
    await tb.down();
    return 1;
  }
  const dash = tb.dashboardDc();
  const dashSvc = dash?.config.services.find((s) => s.name === 'dashboard');
  const up0 = dashSvc?.connect.sidecar_service.proxy.upstreams[0];
  const target = up0 ? tb.dc(up0.datacenter || dash!.config.datacenter) : undefined;
  const counting = target?.config.services.find((s) => s.name === 'counting');
  console.log('\nReady.\n');
  if (dash && dashSvc && target && counting) {
    console.log(`  dashboard:  http://127.0.0.1:${dashSvc.port}/   (JSON: /api/count)`);
    console.log(`\n  the path of one request:`);
    console.log(`    dashboard        127.0.0.1:${dashSvc.port} (${dash.config.datacenter})`);
    console.log(`    → its sidecar    127.0.0.1:${up0?.local_bind_port} upstream, mTLS out`);
    console.log(
      `    → ${dash.config.datacenter} gateway     ${dash.config.gateway.listen} (SNI only, never decrypts)`,
    );
    console.log(`    → ${target.config.datacenter} gateway     ${target.config.gateway.listen}`);
    console.log(
      `    → counting sidecar 127.0.0.1:${counting.connect.sidecar_service.port} (mTLS in, intentions)`,
    );
    console.log(`    → counting       127.0.0.1:${counting.port} (${target.config.datacenter})`);
  }
  for (const [title, args] of [
    ['WAN members', ['members', '-wan']],
    ['federation', ['federation', 'status']],
  ] as const) {
    try {
      console.log(
        `\n  ${title}:\n` +
          (await tb.meshfed([...args, '--http-addr', tb.primary.httpAddr])).replace(/^/gm, '    '),
      );
    } catch (err) {
      console.log(`\n  ${title}: ${(err as Error).message}`);
    }
  }
  console.log('\nCtrl-C stops everything.');
  await new Promise(() => undefined);
  return 0;
}

async function main(): Promise<number> {
  switch (command) {
    case 'up':
      return up();
    case 'down': {
      const stopped = stopRecorded(join(workDir, 'logs'));
      for (const s of stopped)
        console.log(`${s.stopped ? 'stopped' : 'not running'}  ${s.name} (pid ${s.pid})`);
      if (stopped.length === 0) console.log('no testbed processes recorded in', workDir);
      return 0;
    }
    case 'status': {
      const tb = new Testbed({ configFiles: configs, workDir });
      console.log(await tb.meshfed(['federation', 'status', '--http-addr', tb.primary.httpAddr]));
      console.log(await tb.meshfed(['members', '-wan', '--http-addr', tb.primary.httpAddr]));
      return 0;
    }
    default:
      console.error(`unknown command ${command}: use up, down or status`);
      return 2;
  }
}

process.exitCode = await main();
