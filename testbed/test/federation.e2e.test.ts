// The life of a packet across three datacenters, end to end: real `meshfed` server, gateway and
// proxy processes, real SQLite files, real mTLS through real gateways, all on 127.0.0.1. One
// federation is brought up once; the tests run in order against it, as an operator would.

import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@meshfed/testkit';
import {
  Testbed,
  waitUntil,
  writeFederationConfigs,
  type CallResult,
  type DatacenterSpec,
  type GeneratedDc,
} from '../src/index.js';

const repo = resolve(import.meta.dirname, '../../..');
const entries = ['configs/entries/counting-intentions.yaml', 'configs/entries/counting-resolver.yaml'].map(
  (f) => join(repo, f),
);
const work = mkdtempSync(join(tmpdir(), 'meshfed-e2e-'));
let tb: Testbed;
let keepLogs = false;

async function dcSpec(name: string, services: GeneratedDc['services']): Promise<GeneratedDc> {
  return {
    name,
    ports: {
      http: await freePort(),
      server: await freePort(),
      serf: await freePort(),
      gateway: await freePort(),
      gatewayAdmin: await freePort(),
    },
    services,
  };
}

async function countingIn(dc: string): Promise<GeneratedDc['services'][number]> {
  return { name: 'counting', id: `counting-${dc}`, port: await freePort(), sidecarPort: await freePort() };
}

/** Calls until one answer satisfies `want`; returns the calls it took. */
async function callUntil(want: (r: CallResult) => boolean, timeoutMs: number): Promise<CallResult> {
  return waitUntil(
    async () => {
      const r = await tb.callDashboard();
      return want(r) ? r : undefined;
    },
    timeoutMs,
    undefined,
    100,
  );
}

const fromDc = (dc: string) => (r: CallResult) => r.ok && r.answer?.datacenter === dc;

/** Wait until `dc` lists an intention from `source` (with `action`, if given), e.g. after replication. */
async function waitForIntention(
  dc: DatacenterSpec,
  source: string,
  action?: string,
  timeoutMs = 30_000,
): Promise<void> {
  await waitUntil(async () => {
    const list = await tb
      .api<{ SourceName: string; Action: string }[]>(dc, '/v1/connect/intentions')
      .catch(() => []);
    return list.some((i) => i.SourceName === source && (!action || i.Action === action)) ? true : undefined;
  }, timeoutMs);
}

/** Write an allow intention `source` → counting in the primary. */
async function allowToCounting(source: string): Promise<void> {
  await tb.meshfed(['intention', 'create', '-allow', source, 'counting', '--http-addr', tb.primary.httpAddr]);
}

test.before(async (t) => {
  t.timeout(180_000);
  const dcs = [
    await dcSpec('dc1', [
      {
        name: 'dashboard',
        id: 'dashboard',
        port: await freePort(),
        sidecarPort: await freePort(),
        upstreamPort: await freePort(),
      },
    ]),
    await dcSpec('dc2', [await countingIn('dc2')]),
    await dcSpec('dc3', [await countingIn('dc3')]),
  ];
  const files = writeFederationConfigs(join(work, 'configs'), dcs);
  tb = new Testbed({ configFiles: files, entryFiles: entries, workDir: work });
  await tb.up();
});

test.after.always(async () => {
  await tb?.down();
  if (!keepLogs) rmSync(work, { recursive: true, force: true });
});

test.afterEach((t) => {
  if (!t.passed) {
    keepLogs = true;
    t.log(`logs kept in ${join(work, 'logs')}`);
    for (const name of tb.group.names()) t.log(`--- ${name}\n${tb.group.tail(name, 15)}`);
  }
});

test.serial('the dashboard in dc1 reaches counting in dc2 through both gateways', async (t) => {
  const r = await callUntil(fromDc('dc2'), 20_000);
  t.is(r.answer?.instance, 'counting-dc2');
  for (const dc of ['dc1', 'dc2']) {
    const metrics = await (await fetch(`http://${tb.dc(dc).config.gateway.admin}/metrics`)).text();
    const total = metrics
      .split('\n')
      .filter((l) => l.startsWith('gateway_connections_total'))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    t.true(total > 0, `${dc} gateway counted the connection`);
  }
  const routes = await tb.meshfed(['gateway', 'routes', '--admin-addr', tb.dc('dc2').config.gateway.admin]);
  t.regex(routes, /^counting\.default\.dc2\.internal\.\S+\s+local_service\s+dc2\s+127\.0\.0\.1:\d+/m);
  t.regex(routes, /remote_dc\s+dc1\s+127\.0\.0\.1:\d+/);
});

test.serial(
  'a deny intention written in the primary blocks new calls in dc2 within 2 s; allow restores',
  async (t) => {
    await tb.meshfed([
      'intention',
      'create',
      '-deny',
      'dashboard',
      'counting',
      '--http-addr',
      tb.primary.httpAddr,
    ]);
    const started = Date.now();
    await callUntil((r) => !r.ok, 5000);
    t.true(Date.now() - started < 2500, `blocked after ${Date.now() - started} ms`);
    await tb.meshfed([
      'intention',
      'create',
      '-allow',
      'dashboard',
      'counting',
      '--http-addr',
      tb.primary.httpAddr,
    ]);
    await callUntil(fromDc('dc2'), 5000);
    t.pass();
  },
);

test.serial(
  'counting stopped in dc2 → dc3 answers (resolver failover); back in dc2 when it returns',
  async (t) => {
    t.timeout(60_000);
    await tb.group.stop('app-counting-dc2');
    const failed = await callUntil(fromDc('dc3'), 20_000);
    t.is(failed.answer?.instance, 'counting-dc3');
    tb.startAppOnly(tb.dc('dc2'), 'counting-dc2');
    await callUntil(fromDc('dc2'), 30_000);
    t.pass();
  },
);

test.serial('a CA root rotation in the primary during continuous calls fails no call', async (t) => {
  t.timeout(60_000);
  const results: CallResult[] = [];
  let running = true;
  const loop = (async () => {
    while (running) results.push(await tb.callDashboard());
  })();
  const before = JSON.parse(await tb.meshfed(['ca', 'roots', '--json', '--http-addr', tb.primary.httpAddr]));
  await tb.meshfed(['ca', 'rotate', '--http-addr', tb.primary.httpAddr]);
  // wait until every DC trusts the new root, then keep calling a little longer
  for (const dc of tb.dcs) {
    await waitUntil(async () => {
      const roots = await tb.api<{ ActiveRootID: string }>(dc, '/v1/connect/ca/roots');
      return roots.ActiveRootID !== before.ActiveRootID ? true : undefined;
    }, 20_000);
  }
  await new Promise((r) => setTimeout(r, 3000));
  running = false;
  await loop;
  const failures = results.filter((r) => !r.ok);
  t.true(results.length > 20, `${results.length} calls made`);
  t.deepEqual(failures, [], `${failures.length} of ${results.length} calls failed`);
});

test.serial(
  "dc2's server killed with SIGKILL and restarted: data intact, caught up, calls resume",
  async (t) => {
    t.timeout(60_000);
    const dc2 = tb.dc('dc2');
    await tb.group.kill('server-dc2');
    // a write in the primary while dc2 is down must reach it after the restart
    await allowToCounting('ops');
    tb.startServer(dc2);
    await waitForIntention(dc2, 'ops');
    const services = await tb.api<Record<string, string[]>>(dc2, '/v1/catalog/services');
    t.truthy(services['counting'], 'dc2 still knows its counting service after the crash');
    await tb.waitForReplication();
    await callUntil(fromDc('dc2'), 30_000);
  },
);

test.serial('dc2 gateway killed: calls fail over to dc3; restarted: back to dc2', async (t) => {
  t.timeout(90_000);
  await tb.group.kill('gateway-dc2');
  await callUntil(fromDc('dc3'), 30_000);
  tb.startGateway(tb.dc('dc2'));
  await callUntil(fromDc('dc2'), 45_000);
  t.pass();
});

test.serial(
  'a fourth DC joined at runtime with only `meshfed join --token` is usable within seconds and finds the federation again after a restart',
  async (t) => {
    t.timeout(120_000);
    const dc4 = await dcSpec('dc4', [await countingIn('dc4')]);
    // No gossip join address in dc4's YAML: the token is all the operator gives it.
    const [file] = writeFederationConfigs(join(work, 'configs-dc4'), [dc4], {
      primary: { name: 'dc1', serf: tb.primary.config.ports.serf_wan },
      gossipJoin: false,
    });
    const spec = tb.addDatacenter(file!);
    const started = Date.now();
    tb.startServer(spec);
    await waitUntil(
      async () =>
        (await fetch(`${spec.httpAddr}/v1/status/leader`).catch(() => null))?.ok ? true : undefined,
      30_000,
    );
    await tb.join(spec);
    await waitForIntention(spec, 'dashboard');
    const dcsSeen = await tb.api<string[]>(tb.primary, '/v1/catalog/datacenters');
    t.true(dcsSeen.includes('dc4'), `primary sees ${dcsSeen.join(',')}`);
    t.log(`dc4 joined and replicated in ${Date.now() - started} ms`);
    const dc4Alive = async (): Promise<true | undefined> => {
      const members = await tb
        .api<{ Name: string; Status: number }[]>(tb.primary, '/v1/agent/members')
        .catch(() => []);
      return members.some((m) => m.Name.endsWith('.dc4') && m.Status === 1) ? true : undefined;
    };
    await waitUntil(dc4Alive, 30_000);

    // Restart dc4 with the same YAML: what the join taught it is remembered.
    await tb.group.kill('server-dc4');
    await allowToCounting('auditor');
    tb.startServer(spec);
    await waitForIntention(spec, 'auditor');
    const rejoined = await waitUntil(async () => {
      const wan = await tb.api<{ Name: string; Status: number }[]>(spec, '/v1/agent/members').catch(() => []);
      return wan.some((m) => m.Name.endsWith('.dc1') && m.Status === 1) ? true : undefined;
    }, 30_000).catch(() => false);
    t.true(rejoined, 'dc4 rejoined the WAN gossip pool without a gossip.join in its YAML');
  },
);

test.serial('a write sent to a secondary lands in the primary and comes back to every DC', async (t) => {
  const dc2 = tb.dc('dc2');
  await tb.meshfed(['intention', 'create', '-deny', 'batch', 'counting', '--http-addr', dc2.httpAddr]);
  for (const dc of [tb.primary, dc2, tb.dc('dc3')]) await waitForIntention(dc, 'batch', 'deny', 10_000);
  t.pass();
});

test.serial(
  "a dc2 leaf verifies with openssl against dc1's trust bundle, through dc2's intermediate",
  async (t) => {
    const out = join(work, 'leaf-dc2');
    await tb.meshfed(['ca', 'leaf', 'counting', '--out', out, '--http-addr', tb.dc('dc2').httpAddr]);
    const bundle = join(work, 'bundle-dc1.pem');
    writeFileSync(bundle, await tb.meshfed(['ca', 'roots', '--pem', '--http-addr', tb.primary.httpAddr]));
    const leafPems = readFileSync(join(out, 'leaf.pem'), 'utf8');
    t.true((leafPems.match(/BEGIN CERTIFICATE/g)?.length ?? 0) >= 2, 'the leaf comes with its intermediate');
    const { stdout } = await promisify(execFile)('openssl', [
      'verify',
      '-CAfile',
      bundle,
      '-untrusted',
      join(out, 'leaf.pem'),
      join(out, 'leaf.pem'),
    ]);
    t.regex(stdout, /OK/);
  },
);

test.serial(
  'primary stopped: dc2 and dc3 keep serving, still see each other, and calls keep flowing',
  async (t) => {
    t.timeout(60_000);
    await tb.group.stop('server-dc1');
    const dc2 = tb.dc('dc2');
    const intentions = await tb.api<unknown[]>(dc2, '/v1/connect/intentions');
    t.true(intentions.length > 0, 'dc2 still serves the replicated intentions');
    const dc3Services = await waitUntil(async () => {
      try {
        return await tb.api<Record<string, string[]>>(dc2, '/v1/catalog/services?dc=dc3');
      } catch {
        return undefined;
      }
    }, 20_000);
    t.truthy(dc3Services['counting'], "dc2 reads dc3's catalog without the primary");
    const leaf = await tb.api<{ CertPEM: string }>(dc2, '/v1/agent/connect/ca/leaf/counting');
    t.regex(leaf.CertPEM, /BEGIN CERTIFICATE/, 'dc2 still signs leaves with its intermediate');
    const r = await callUntil((x) => x.ok, 10_000);
    t.true(r.ok, 'the data plane does not need the primary');
  },
);
