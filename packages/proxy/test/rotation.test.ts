import net from 'node:net';
import test from 'ava';
import { ApiClient } from '@meshfed/client';
import { Registry, silentLogger } from '@meshfed/core';
import { freePort, ManualClock, tempDir, waitFor } from '@meshfed/testkit';
import { TestCa, rootsOf } from './fixtures/test-ca.js';
import {
  dialApp,
  echo,
  setHealth,
  sidecarEntry,
  startApp,
  startFake,
  startSidecar,
} from './fixtures/mesh.js';
import { ApiDataSources, MeshProxy } from '../src/index.js';

const TD = '11111111-2222-3333-4444-555555555555.consul';

test('a long-lived stream flows across a leaf rotation and a root rotation; new connections all succeed', async (t) => {
  const dir = tempDir(t);
  const ca1 = TestCa.create(dir, TD, 'Root 1');
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca1]));
  const app = await startApp(t, 'counting');
  const b = await startSidecar(t, fake, ca1, { service: 'counting', appPort: app.port });
  setHealth(fake, 'counting', undefined, [sidecarEntry('counting', b.port)]);
  const upPort = await freePort();
  const a = await startSidecar(t, fake, ca1, {
    service: 'dashboard',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort }],
  });

  // The stream: a message every 10 ms, each must come back in order.
  const { sock: stream } = await dialApp(upPort);
  let sent = 0;
  let received = '';
  let expected = '';
  let streamErrors = 0;
  stream.on('data', (c: Buffer) => (received += c.toString()));
  stream.on('error', () => streamErrors++);
  stream.on('close', () => streamErrors++);
  const ticker = setInterval(() => {
    const m = `m${sent++};`;
    expected += m;
    stream.write(m);
  }, 10);
  // New connections, one after another, for the whole rotation.
  let newOk = 0;
  const newFailures: string[] = [];
  let churn = true;
  const churner = (async () => {
    while (churn) {
      try {
        const { sock } = await dialApp(upPort);
        sock.destroy();
        newOk++;
      } catch (err) {
        newFailures.push(String(err));
      }
    }
  })();
  const serial = async (p: MeshProxy) => (await p.check()).identity!.serial;
  const waitOk = (n: number) => waitFor(() => newOk >= n, { what: `${n} new connections` });

  await waitOk(3);
  // 1. leaf rotation (same root)
  const d2 = ca1.leaf({ service: 'dashboard' });
  const c2 = ca1.leaf({ service: 'counting' });
  fake.set('/v1/agent/connect/ca/leaf/dashboard', d2);
  fake.set('/v1/agent/connect/ca/leaf/counting', c2);
  await waitFor(
    async () => (await serial(a.proxy)) === d2.SerialNumber && (await serial(b.proxy)) === c2.SerialNumber,
  );
  await waitOk(newOk + 3);

  // 2. root rotation: both roots trusted, new root active, leaves re-issued one side at a time
  const ca2 = TestCa.create(dir, TD, 'Root 2');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca1, ca2], ca2));
  await waitFor(
    async () => (await a.proxy.check()).roots.length === 2 && (await b.proxy.check()).roots.length === 2,
  );
  const d3 = ca2.leaf({ service: 'dashboard' });
  fake.set('/v1/agent/connect/ca/leaf/dashboard', d3);
  await waitFor(async () => (await serial(a.proxy)) === d3.SerialNumber);
  await waitOk(newOk + 3);
  const c3 = ca2.leaf({ service: 'counting' });
  fake.set('/v1/agent/connect/ca/leaf/counting', c3);
  await waitFor(async () => (await serial(b.proxy)) === c3.SerialNumber);
  await waitOk(newOk + 3);
  // old root retired
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca2]));
  await waitFor(
    async () => (await a.proxy.check()).roots.length === 1 && (await b.proxy.check()).roots.length === 1,
  );
  await waitOk(newOk + 3);

  churn = false;
  await churner;
  clearInterval(ticker);
  await waitFor(() => received.length >= expected.length, { what: 'the stream to catch up' });
  t.is(received, expected, 'every message came back, in order');
  t.is(streamErrors, 0);
  t.deepEqual(newFailures, []);
  t.true(sent > 20 && newOk > 15, `sent ${sent}, new connections ${newOk}`);
  stream.destroy();
  // and the new identity is what a fresh connection presents
  const fresh = await dialApp(upPort);
  t.is(await echo(fresh.sock, 'after'), 'after');
  fresh.sock.destroy();
});

test('renewal is scheduled at 60–90 % of the leaf lifetime on the injected clock; cert expiry gauge', async (t) => {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const leaf = ca.leaf({ service: 'counting', days: 10 });
  fake.set('/v1/agent/connect/ca/leaf/counting', leaf);
  fake.set('/v1/connect/intentions/match?name=counting', { counting: [] });
  fake.set('/v1/agent/service/counting-sidecar-proxy', {
    ID: 'counting-sidecar-proxy',
    Service: 'counting-sidecar-proxy',
    Kind: 'connect-proxy',
    Port: await freePort(),
    Proxy: { DestinationServiceName: 'counting', LocalServicePort: 1 },
  });
  const clock = new ManualClock(Date.parse(leaf.ValidAfter));
  const api = new ApiClient({ address: fake.url }, { clock });
  const registry = new Registry();
  const proxy = new MeshProxy(
    { proxyId: 'counting-sidecar-proxy', datacenter: 'dc1', random: () => 0.5 },
    {
      logger: silentLogger,
      clock,
      registry,
      sources: new ApiDataSources(api, { logger: silentLogger, clock }, { wait: '10s' }),
    },
  );
  t.teardown(async () => {
    await proxy.close();
    api.close();
  });
  await proxy.start();
  const lifetime = Date.parse(leaf.ValidBefore) - Date.parse(leaf.ValidAfter);
  t.regex(registry.render(), new RegExp(`meshfed_proxy_cert_expiry_seconds ${lifetime / 1000}\\b`));
  const plainLeafGets = () => fake.requests.filter((r) => r === '/v1/agent/connect/ca/leaf/counting?').length;
  const before = plainLeafGets();
  await clock.advanceAsync(lifetime * 0.74);
  t.is(plainLeafGets(), before, 'nothing before 75 % (random 0.5 in 60–90 %)');
  await clock.advanceAsync(lifetime * 0.02);
  await waitFor(() => plainLeafGets() > before, { what: 'renewal read of the leaf' });
  t.is(
    plainLeafGets(),
    before + 1,
    'one read, then wait (no tight retry loop while the server has not renewed)',
  );
  // the server had no new leaf yet; once it has, the proxy installs it
  const next = ca.leaf({ service: 'counting', days: 10 });
  fake.set('/v1/agent/connect/ca/leaf/counting', next);
  await waitFor(async () => (await proxy.check()).identity!.serial === next.SerialNumber);
  t.pass();
});

test('closing the proxy ends its listeners and connections', async (t) => {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const app = await startApp(t, 'counting');
  const b = await startSidecar(t, fake, ca, { service: 'counting', appPort: app.port });
  await b.proxy.close();
  await b.proxy.close(); // idempotent
  const refused = await new Promise<boolean>((r) => {
    const s = net.connect(b.port, '127.0.0.1');
    s.on('error', () => r(true));
    s.on('connect', () => {
      s.destroy();
      r(false);
    });
  });
  t.true(refused);
});
