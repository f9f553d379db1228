import test, { type ExecutionContext } from 'ava';
import { freePort, tempDir, waitFor } from '@meshfed/testkit';
import { TestCa, rootsOf } from './fixtures/test-ca.js';
import { FakeConsul } from './fixtures/fake-consul.js';
import { startSniGateway } from './fixtures/sni-gateway.js';
import {
  dialApp,
  echo,
  setHealth,
  sidecarEntry,
  startApp,
  startFake,
  startSidecar,
} from './fixtures/mesh.js';
import { compileFilter, type HealthEntry, type UpstreamConfig } from '../src/index.js';

const TD = '11111111-2222-3333-4444-555555555555.consul';

/** dc1 and dc2 with a counting instance (app + sidecar) in each, and a dashboard sidecar in dc1. */
async function twoDcs(t: ExecutionContext, upstream: Partial<UpstreamConfig> = {}) {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const dc1 = await startFake(t, 'dc1');
  const dc2 = await startFake(t, 'dc2');
  for (const f of [dc1, dc2]) f.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const app1 = await startApp(t, 'counting-dc1');
  const app2 = await startApp(t, 'counting-dc2');
  const c1 = await startSidecar(t, dc1, ca, { service: 'counting', appPort: app1.port });
  const c2 = await startSidecar(t, dc2, ca, { service: 'counting', appPort: app2.port });
  const e1 = sidecarEntry('counting', c1.port);
  const e2 = sidecarEntry('counting', c2.port, { dc: 'dc2' });
  setHealth(dc1, 'counting', undefined, [e1]);
  setHealth(dc1, 'counting', 'dc2', [e2]);
  dc1.set('/v1/config/service-resolver', [
    {
      Kind: 'service-resolver',
      Name: 'counting',
      ConnectTimeout: '2s',
      Failover: { '*': { Datacenters: ['dc2'] } },
    },
  ]);
  const upPort = await freePort();
  const dash = await startSidecar(t, dc1, ca, {
    service: 'dashboard',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort, ...upstream }],
  });
  return { ca, dc1, dc2, e1, e2, upPort, dash };
}

async function greetingOf(port: number): Promise<string> {
  const { sock, greeting } = await dialApp(port);
  sock.destroy();
  return greeting;
}

test('failover: primary instances gone → next DC with its own SNI, and back when they recover', async (t) => {
  const { dc1, e1, upPort, dash } = await twoDcs(t);
  t.is(await greetingOf(upPort), 'counting-dc1');
  setHealth(dc1, 'counting', undefined, []);
  await waitFor(async () => (await greetingOf(upPort)) === 'counting-dc2', {
    timeoutMs: 5000,
    what: 'failover to dc2',
  });
  const check = await dash.proxy.check();
  t.deepEqual(
    check.upstreams[0]!.targets.map((x) => [x.sni, x.healthyInstances]),
    [
      [`counting.default.dc1.internal.${TD}`, 0],
      [`counting.default.dc2.internal.${TD}`, 1],
    ],
  );
  // a long request through the failover target works too
  const { sock } = await dialApp(upPort);
  t.is(await echo(sock, 'y'.repeat(50_000)), 'y'.repeat(50_000));
  sock.destroy();
  setHealth(dc1, 'counting', undefined, [e1]);
  await waitFor(async () => (await greetingOf(upPort)) === 'counting-dc1', {
    timeoutMs: 5000,
    what: 'fail back to dc1',
  });
  t.pass();
});

test('failover also when the primary DC cannot be read, and a dead endpoint is retried on the next one', async (t) => {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const dc1 = await startFake(t, 'dc1');
  const dc2 = await startFake(t, 'dc2');
  for (const f of [dc1, dc2]) f.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const app2 = await startApp(t, 'counting-dc2');
  const app3 = await startApp(t, 'counting-dc3');
  const c2 = await startSidecar(t, dc2, ca, { service: 'counting', appPort: app2.port });
  const dc3 = await startFake(t, 'dc3');
  dc3.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const c3 = await startSidecar(t, dc3, ca, { service: 'counting', appPort: app3.port });
  const dead = await freePort();
  setHealth(dc1, 'counting', 'dc2', [
    sidecarEntry('counting', dead, { dc: 'dc2' }),
    sidecarEntry('counting', c2.port, { dc: 'dc2' }),
  ]);
  setHealth(dc1, 'counting', 'dc3', [sidecarEntry('counting', c3.port, { dc: 'dc3' })]);
  dc1.set('/v1/config/service-resolver', [
    {
      Kind: 'service-resolver',
      Name: 'counting',
      Failover: { '*': { Targets: [{ Datacenter: 'dc3' }] } },
    },
  ]);
  const upPort = await freePort();
  await startSidecar(t, dc1, ca, {
    service: 'dashboard',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', Datacenter: 'dc2', LocalBindPort: upPort }],
  });
  // round robin starts at the dead endpoint: every second connection is a retry
  for (let i = 0; i < 4; i++) t.is(await greetingOf(upPort), 'counting-dc2');
  // dc2 becomes unreadable (its instances are still listed as healthy in the last answer)
  dc1.fail(FakeConsul.key('/v1/health/connect/counting', 'dc2'));
  await waitFor(async () => (await greetingOf(upPort)) === 'counting-dc3', {
    timeoutMs: 5000,
    what: 'failover to dc3',
  });
  // dc2 readable again at the same index: back to dc2
  dc1.heal(FakeConsul.key('/v1/health/connect/counting', 'dc2'));
  await waitFor(async () => (await greetingOf(upPort)) === 'counting-dc2', {
    timeoutMs: 5000,
    what: 'back to dc2',
  });
});

test('subsets: DefaultSubset with a Filter over meta and tags, OnlyPassing, subset SNI; Redirect', async (t) => {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const dc1 = await startFake(t, 'dc1');
  dc1.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const v1 = await startApp(t, 'counting-v1');
  const v2 = await startApp(t, 'counting-v2');
  const s1 = await startSidecar(t, dc1, ca, { service: 'counting', appPort: v1.port });
  // the second instance shares the leaf path; a second sidecar with its own proxy ID
  const s2port = await freePort();
  dc1.set('/v1/agent/service/counting2-sidecar-proxy', {
    ID: 'counting2-sidecar-proxy',
    Service: 'counting-sidecar-proxy',
    Kind: 'connect-proxy',
    Address: '127.0.0.1',
    Port: s2port,
    Proxy: { DestinationServiceName: 'counting', LocalServicePort: v2.port },
  });
  const { MeshProxy, ApiDataSources } = await import('../src/index.js');
  const { ApiClient } = await import('@meshfed/client');
  const { Registry, silentLogger, systemClock } = await import('@meshfed/core');
  const api = new ApiClient({ address: dc1.url });
  const p2 = new MeshProxy(
    { proxyId: 'counting2-sidecar-proxy', datacenter: 'dc1' },
    {
      logger: silentLogger,
      clock: systemClock,
      registry: new Registry(),
      sources: new ApiDataSources(api, { logger: silentLogger }, { wait: '10s' }),
    },
  );
  t.teardown(async () => {
    await p2.close();
    api.close();
  });
  await p2.start();
  const entries: HealthEntry[] = [
    sidecarEntry('counting', s1.port, { meta: { version: 'v1' } }),
    sidecarEntry('counting', s2port, { meta: { version: 'v2' }, tags: ['canary'], status: 'warning' }),
  ];
  setHealth(dc1, 'counting', undefined, entries);
  const resolver = (onlyPassing: boolean) => ({
    Kind: 'service-resolver',
    Name: 'counting',
    DefaultSubset: 'v2',
    Subsets: {
      v1: { Filter: 'Service.Meta.version == v1' },
      v2: { Filter: '"canary" in Service.Tags and Service.Meta.version != v1', OnlyPassing: onlyPassing },
    },
  });
  dc1.set('/v1/config/service-resolver', [resolver(false)]);
  const upPort = await freePort();
  const dash = await startSidecar(t, dc1, ca, {
    service: 'dashboard',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort }],
  });
  for (let i = 0; i < 3; i++) t.is(await greetingOf(upPort), 'counting-v2');
  const check = await dash.proxy.check();
  t.is(check.upstreams[0]!.targets[0]!.sni, `v2.counting.default.dc1.internal.${TD}`);
  // OnlyPassing drops the warning instance: no target left, connection refused and counted
  dc1.set('/v1/config/service-resolver', [resolver(true)]);
  await waitFor(async () => (await dash.proxy.check()).upstreams[0]!.targets[0]!.healthyInstances === 0);
  await t.throwsAsync(dialApp(upPort));
  t.regex(dash.registry.render(), /meshfed_proxy_upstream_connect_failures_total\{upstream="counting"\} 1/);
  // Redirect to another service in another DC
  dc1.set('/v1/config/service-resolver', [
    { Kind: 'service-resolver', Name: 'counting', Redirect: { Service: 'counter', Datacenter: 'dc9' } },
  ]);
  await waitFor(async () => (await dash.proxy.check()).upstreams[0]!.targets[0]!.service === 'counter');
  t.is((await dash.proxy.check()).upstreams[0]!.targets[0]!.sni, `counter.default.dc9.internal.${TD}`);
});

test('mesh gateway mode precedence: upstream > registration > service-defaults > proxy-defaults', async (t) => {
  const { dc1, dash } = await twoDcs(t, { Datacenter: 'dc2' });
  const gw = (lan: number, wan: number): HealthEntry => ({
    Node: { Node: 'gw', Address: '127.0.0.1' },
    Service: {
      ID: 'mesh-gateway',
      Service: 'mesh-gateway',
      Kind: 'mesh-gateway',
      Port: lan,
      TaggedAddresses: { lan: { Address: '127.0.0.1', Port: lan }, wan: { Address: '127.0.0.2', Port: wan } },
    },
    Checks: [{ Status: 'passing' }],
  });
  dc1.set('/v1/health/service/mesh-gateway', [gw(8443, 9443)]);
  dc1.set('/v1/internal/federation-states/mesh-gateways', { dc2: [gw(18443, 19443)] });
  const via = async () => {
    const x = (await dash.proxy.check()).upstreams[0]!.targets[0]!;
    return `${x.via} ${x.endpoints.map((e) => `${e.address}:${e.port}`).join(',')}`;
  };
  const expectVia = (want: string) =>
    waitFor(async () => (await via()) === want, { what: want, timeoutMs: 5000 });
  t.regex(await via(), /^direct 127\.0\.0\.1:\d+$/, 'no mode anywhere: none');
  dc1.set('/v1/config/proxy-defaults', [
    { Kind: 'proxy-defaults', Name: 'global', MeshGateway: { Mode: 'local' } },
  ]);
  await expectVia('local-gateway 127.0.0.1:8443');
  dc1.set('/v1/config/service-defaults', [
    { Kind: 'service-defaults', Name: 'counting', MeshGateway: { Mode: 'remote' } },
  ]);
  await expectVia('remote-gateway 127.0.0.2:19443');
  const reg = dc1.get('/v1/agent/service/dashboard-sidecar-proxy') as { Proxy: Record<string, unknown> };
  dc1.set('/v1/agent/service/dashboard-sidecar-proxy', {
    ...reg,
    Proxy: { ...reg.Proxy, MeshGateway: { Mode: 'local' } },
  });
  await expectVia('local-gateway 127.0.0.1:8443');
  const up = (reg.Proxy['Upstreams'] as UpstreamConfig[])[0]!;
  dc1.set('/v1/agent/service/dashboard-sidecar-proxy', {
    ...reg,
    Proxy: {
      ...reg.Proxy,
      MeshGateway: { Mode: 'local' },
      Upstreams: [{ ...up, MeshGateway: { Mode: 'none' } }],
    },
  });
  await waitFor(async () => (await via()).startsWith('direct '), { what: 'upstream none wins' });
  t.is((await dash.proxy.check()).upstreams[0]!.targets[0]!.sni, `counting.default.dc2.internal.${TD}`);
});

test('across DCs through mesh gateways that only see the SNI: local mode, then remote mode', async (t) => {
  const { dc1, upPort } = await twoDcs(t, { Datacenter: 'dc2' });
  const c2 = (dc1.get('/v1/health/connect/counting?dc=dc2') as HealthEntry[])[0]!.Service.Port;
  const sni = `counting.default.dc2.internal.${TD}`;
  // dc2's gateway routes the service SNI to the instance; dc1's gateway forwards to dc2's gateway.
  const remoteGw = await startSniGateway(t, new Map([[sni, c2]]));
  const localGw = await startSniGateway(t, new Map([[sni, remoteGw.port]]));
  const gw = (port: number, wan: number): HealthEntry => ({
    Node: { Node: 'gw', Address: '127.0.0.1' },
    Service: {
      ID: 'mesh-gateway',
      Service: 'mesh-gateway',
      Kind: 'mesh-gateway',
      Port: port,
      TaggedAddresses: {
        lan: { Address: '127.0.0.1', Port: port },
        wan: { Address: '127.0.0.1', Port: wan },
      },
    },
    Checks: [{ Status: 'passing' }],
  });
  dc1.set('/v1/health/service/mesh-gateway', [gw(localGw.port, localGw.port)]);
  dc1.set('/v1/internal/federation-states/mesh-gateways', { dc2: [gw(remoteGw.port, remoteGw.port)] });
  dc1.set('/v1/config/proxy-defaults', [
    { Kind: 'proxy-defaults', Name: 'global', MeshGateway: { Mode: 'local' } },
  ]);
  await waitFor(
    async () => {
      await greetingOf(upPort);
      return localGw.seen.length > 0;
    },
    { what: 'a connection through the local gateway' },
  );
  t.is(await greetingOf(upPort), 'counting-dc2');
  t.deepEqual([...new Set([...localGw.seen, ...remoteGw.seen])], [sni]);
  const before = localGw.seen.length;
  dc1.set('/v1/config/proxy-defaults', [
    { Kind: 'proxy-defaults', Name: 'global', MeshGateway: { Mode: 'remote' } },
  ]);
  const remoteBefore = remoteGw.seen.length;
  await waitFor(
    async () => {
      const g = await greetingOf(upPort);
      return g === 'counting-dc2' && remoteGw.seen.length > remoteBefore && localGw.seen.length === before;
    },
    { what: 'straight to the remote gateway' },
  );
  t.pass();
});

test('bexpr subset: operators, and/or/not, parens, bad filters rejected', (t) => {
  const e = {
    Service: { Meta: { version: 'v1', 'odd key': 'x' }, Tags: ['a', 'canary'] },
    Node: { Node: 'n1' },
  };
  const yes = [
    'Service.Meta.version == v1',
    'Service.Meta.version == "v1"',
    'Service.Meta.version != v2',
    '"canary" in Service.Tags',
    'b not in Service.Tags',
    'Service.Tags contains a',
    'Service.Tags not contains zz',
    'Service.Meta["odd key"] == x',
    'not Service.Meta.version == v2',
    '(Service.Meta.version == v2 or Node.Node == n1) and a in Service.Tags',
    'Service.Meta.missing is empty',
    'Service.Tags is not empty',
  ];
  const no = [
    'Service.Meta.version == v2',
    'Service.Meta.missing == v1',
    'not (a in Service.Tags)',
    'x in Service.Tags and Service.Meta.version == v1',
  ];
  for (const f of yes) t.true(compileFilter(f)(e), f);
  for (const f of no) t.false(compileFilter(f)(e), f);
  for (const bad of [
    'Service.Meta.version =',
    'Service.Meta.version == v1 and',
    '(a in Service.Tags',
    'Service.Meta.version = v1',
    '"unterminated in x',
  ])
    t.throws(() => compileFilter(bad), { code: 'MESH_ERR_PROXY_FILTER_INVALID' } as never, bad);
});
