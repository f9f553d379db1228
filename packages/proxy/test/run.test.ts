import test, { type ExecutionContext } from 'ava';
import { createLogger } from '@meshfed/core';
import { freePort, tempDir, waitFor } from '@meshfed/testkit';
import { TestCa, rootsOf } from './fixtures/test-ca.js';
import { setHealth, sidecarEntry, startFake } from './fixtures/mesh.js';
import { runProxy, type ProxyCheck } from '../src/index.js';

const TD = '11111111-2222-3333-4444-555555555555.consul';

async function setup(t: ExecutionContext) {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const port = await freePort();
  const upPort = await freePort();
  const reg = {
    ID: 'dashboard-sidecar-proxy',
    Service: 'dashboard-sidecar-proxy',
    Kind: 'connect-proxy',
    Address: '127.0.0.1',
    Port: port,
    Proxy: {
      DestinationServiceName: 'dashboard',
      DestinationServiceID: 'dashboard',
      LocalServicePort: 9002,
      Upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort }],
    },
  };
  fake.set('/v1/agent/services', {
    dashboard: { ID: 'dashboard', Service: 'dashboard', Port: 9002 },
    [reg.ID]: reg,
  });
  fake.set('/v1/agent/service/dashboard-sidecar-proxy', reg);
  fake.set('/v1/agent/connect/ca/leaf/dashboard', ca.leaf({ service: 'dashboard' }));
  fake.set('/v1/connect/intentions/match?name=dashboard', { dashboard: [] });
  for (const k of ['service-resolver', 'service-defaults', 'proxy-defaults']) fake.set(`/v1/config/${k}`, []);
  setHealth(fake, 'counting', undefined, [sidecarEntry('counting', 21000)]);
  return { fake, port, upPort };
}

test('meshfed proxy --sidecar-for <id> --check prints resolved upstream targets and identity', async (t) => {
  const { fake, upPort } = await setup(t);
  let out = '';
  const code = await runProxy(['--sidecar-for', 'dashboard', '--http-addr', fake.url, '--check'], {
    logger: createLogger({ level: 'silent', destination: { write: () => undefined } }),
    signal: new AbortController().signal,
    out: (s) => (out += s),
  });
  t.is(code, 0);
  const check = JSON.parse(out) as ProxyCheck;
  t.is(check.proxyId, 'dashboard-sidecar-proxy');
  t.is(check.identity!.spiffeId, `spiffe://${TD}/ns/default/dc/dc1/svc/dashboard`);
  t.is(check.upstreams[0]!.bind, `127.0.0.1:${upPort}`);
  t.is(check.upstreams[0]!.targets[0]!.sni, `counting.default.dc1.internal.${TD}`);
  t.deepEqual(check.upstreams[0]!.targets[0]!.endpoints, [{ address: '127.0.0.1', port: 21000 }]);
});

test('meshfed proxy registers its instance with an alias check, runs until aborted; bad input exits non-zero', async (t) => {
  const { fake, port } = await setup(t);
  const ac = new AbortController();
  const logger = createLogger({ level: 'silent', destination: { write: () => undefined } });
  const running = runProxy(['--sidecar-for', 'dashboard', '--register'], {
    logger,
    signal: ac.signal,
    env: { MESHFED_HTTP_ADDR: fake.url },
    onReady: () => {
      // the server loses the instance: the proxy registers it again
      fake.delete('/v1/agent/service/dashboard-sidecar-proxy');
      void waitFor(() => fake.registrations.length >= 2, { what: 're-registration' }).then(() => ac.abort());
    },
  });
  t.is(await running, 0);
  t.is(fake.registrations.length, 2, 'registered at start, and again after the server lost it');
  const r = fake.registrations[0]!;
  t.is(r['Port'], port);
  t.deepEqual(
    (r['Checks'] as Record<string, unknown>[]).map((c) => c['AliasService'] ?? c['TCP']),
    [`127.0.0.1:${port}`, 'dashboard'],
  );
  // unknown service: a clear failure, exit 1
  const lines: string[] = [];
  const code = await runProxy(['--sidecar-for', 'nope', '--http-addr', fake.url], {
    logger: createLogger({ level: 'error', destination: { write: (l: string) => void lines.push(l) } }),
    signal: new AbortController().signal,
  });
  t.is(code, 1);
  t.regex(
    lines.join(''),
    /MESH_ERR_PROXY_REGISTRATION.*no connect-proxy registration has DestinationServiceID/,
  );
  t.is(await runProxy(['--bogus'], { logger, signal: ac.signal }), 2);
  t.is(await runProxy([], { logger, signal: ac.signal }), 2);
});
