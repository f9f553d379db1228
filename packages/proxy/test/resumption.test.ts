import test from 'ava';
import { freePort, tempDir, waitFor } from '@meshfed/testkit';
import { TestCa, rootsOf } from './fixtures/test-ca.js';
import {
  dialApp,
  echo,
  sidecarEntry,
  setHealth,
  startApp,
  startFake,
  startSidecar,
} from './fixtures/mesh.js';

const resumed = (text: string): number => {
  const m = /meshfed_proxy_tls_sessions_resumed_total\{service="counting"\} (\d+)/.exec(text);
  return m ? Number(m[1]) : 0;
};
const connections = (text: string): number => {
  const m = /meshfed_proxy_connections_total\{listener="upstream:counting"\} (\d+)/.exec(text);
  return m ? Number(m[1]) : 0;
};

async function roundTrip(port: number, msg: string): Promise<string> {
  const { sock, greeting } = await dialApp(port);
  const back = await echo(sock, msg);
  sock.destroy();
  return `${greeting}:${back}`;
}

test('upstream connections resume the TLS session with a target; a new leaf forces a full handshake; the option turns it off', async (t) => {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, '11111111-2222-3333-4444-555555555555.consul');
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const counting = await startApp(t, 'counting');
  const b = await startSidecar(t, fake, ca, { service: 'counting', appPort: counting.port });
  setHealth(fake, 'counting', undefined, [sidecarEntry('counting', b.port)]);
  const upPort = await freePort();
  const a = await startSidecar(t, fake, ca, {
    service: 'dashboard',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort }],
  });

  // First connection: full handshake; B's session ticket is kept for the next ones.
  t.is(await roundTrip(upPort, 'one'), 'counting:one');
  t.is(resumed(a.registry.render()), 0);
  for (const m of ['two', 'three']) t.is(await roundTrip(upPort, m), `counting:${m}`);
  t.true(resumed(a.registry.render()) >= 1, 'later connections resumed the session');
  // B still decided each resumed connection by intentions, with the caller's identity.
  t.true(b.registry.render().includes('meshfed_proxy_authz_total{source="dashboard",result="allowed"} 3'));

  // A new leaf for A: cached sessions carry the old identity and are dropped.
  const before = resumed(a.registry.render());
  const next = ca.leaf({ service: 'dashboard' });
  fake.set('/v1/agent/connect/ca/leaf/dashboard', next);
  await waitFor(async () => (await a.proxy.check()).identity?.serial === next.SerialNumber, {
    what: 'new leaf installed',
  });
  t.is(await roundTrip(upPort, 'four'), 'counting:four');
  t.is(resumed(a.registry.render()), before, 'first connection after the rotation is a full handshake');
  t.is(connections(a.registry.render()), 4);

  // sessionResumption: false → every connection is a full handshake.
  const upPort2 = await freePort();
  const c = await startSidecar(t, fake, ca, {
    service: 'web',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort2 }],
    options: { sessionResumption: false },
  });
  for (const m of ['a', 'b', 'c']) t.is(await roundTrip(upPort2, m), `counting:${m}`);
  t.is(resumed(c.registry.render()), 0);

  // An inbound listener with sessionResumption: false issues no usable ticket: a caller that
  // would resume (A, the default) makes a full handshake every time.
  const quiet = await startApp(t, 'quiet');
  const q = await startSidecar(t, fake, ca, {
    service: 'quiet',
    appPort: quiet.port,
    options: { sessionResumption: false },
  });
  setHealth(fake, 'quiet', undefined, [sidecarEntry('quiet', q.port)]);
  const upPort3 = await freePort();
  const d = await startSidecar(t, fake, ca, {
    service: 'dashboard2',
    appPort: 1,
    upstreams: [{ DestinationName: 'quiet', LocalBindPort: upPort3 }],
  });
  for (const m of ['x', 'y', 'z']) t.is(await roundTrip(upPort3, m), `quiet:${m}`);
  t.false(d.registry.render().includes('meshfed_proxy_tls_sessions_resumed_total{service="quiet"}'));
});
