import test from 'ava';
import { freePort, tempDir } from '@meshfed/testkit';
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

test('app A → sidecar → sidecar → app B and back, counted per listener', async (t) => {
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

  const { sock, greeting } = await dialApp(upPort);
  t.is(greeting, 'counting');
  const payload = 'x'.repeat(100_000);
  t.is(await echo(sock, payload), payload);
  sock.destroy();

  t.is(a.registry.render().includes('meshfed_proxy_connections_total{listener="upstream:counting"} 1'), true);
  t.is(
    b.registry.render().includes('meshfed_proxy_authz_total{source="dashboard",result="allowed"} 1'),
    true,
  );
  const check = await a.proxy.check();
  t.is(check.service, 'dashboard');
  t.is(
    check.upstreams[0]!.targets[0]!.sni,
    'counting.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul',
  );
  t.deepEqual(check.upstreams[0]!.targets[0]!.endpoints, [{ address: '127.0.0.1', port: b.port }]);
  t.true(check.identity!.spiffeId.endsWith('/ns/default/dc/dc1/svc/dashboard'));
});
