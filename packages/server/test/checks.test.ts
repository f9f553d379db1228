// The check runner against real sockets (TCP, HTTP) and on a manual clock (TTL expiry,
// DeregisterCriticalServiceAfter).

import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { ManualClock, freePort, waitFor } from '@meshfed/testkit';
import { startServer, call } from './helpers.js';

interface Check {
  CheckID: string;
  Status: string;
  Output: string;
}

const checksOf = async (base: string): Promise<Record<string, Check>> =>
  (await call(base, 'GET', '/v1/agent/checks')).json as Record<string, Check>;

test('TCP and HTTP checks follow the real endpoints: passing, warning (429), critical', async (t) => {
  const srv = await startServer(t);
  const base = srv.httpAddress();
  let code = 200;
  const app = http.createServer((_req, res) => {
    res.writeHead(code);
    res.end();
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.teardown(() => app.close());
  const appPort = (app.address() as net.AddressInfo).port;
  const tcpPort = await freePort();
  const r = await call(base, 'PUT', '/v1/agent/service/register', {
    Name: 'web',
    Port: appPort,
    Checks: [
      { CheckID: 'web-http', HTTP: `http://127.0.0.1:${appPort}/health`, Interval: '100ms', Timeout: '1s' },
      { CheckID: 'web-tcp', TCP: `127.0.0.1:${tcpPort}`, Interval: '100ms', Timeout: '1s' },
    ],
  });
  t.is(r.status, 200, r.text);
  await waitFor(async () => (await checksOf(base))['web-http']?.Status === 'passing', {
    what: 'http passing',
  });
  await waitFor(
    async () =>
      (await checksOf(base))['web-tcp']?.Status === 'critical' &&
      (await checksOf(base))['web-tcp']?.Output.includes('ECONNREFUSED'),
    { what: 'tcp critical' },
  );

  const listener = net.createServer((s) => s.destroy());
  await new Promise<void>((res) => listener.listen(tcpPort, '127.0.0.1', res));
  t.teardown(() => listener.close());
  await waitFor(async () => (await checksOf(base))['web-tcp']?.Status === 'passing', { what: 'tcp passing' });

  code = 429;
  await waitFor(async () => (await checksOf(base))['web-http']?.Status === 'warning', {
    what: 'http warning',
  });
  code = 503;
  await waitFor(async () => (await checksOf(base))['web-http']?.Status === 'critical', {
    what: 'http critical',
  });
  const health = (await call(base, 'GET', '/v1/health/service/web?passing')).json as unknown[];
  t.deepEqual(health, []);
});

test('TTL expiry and DeregisterCriticalServiceAfter run on the injected clock', async (t) => {
  const clock = new ManualClock();
  const srv = await startServer(t, {}, { clock });
  const base = srv.httpAddress();
  const r = await call(base, 'PUT', '/v1/agent/service/register', {
    Name: 'worker',
    Check: { TTL: '10s', Status: 'passing', DeregisterCriticalServiceAfter: '1m' },
  });
  t.is(r.status, 200, r.text);
  t.is((await checksOf(base))['service:worker']?.Status, 'passing');
  clock.advance(9_000);
  t.is((await checksOf(base))['service:worker']?.Status, 'passing');
  await call(base, 'PUT', '/v1/agent/check/pass/service:worker');
  clock.advance(9_000);
  t.is((await checksOf(base))['service:worker']?.Status, 'passing', 'a heartbeat re-arms the TTL');
  clock.advance(1_500);
  const expired = (await checksOf(base))['service:worker'];
  t.is(expired?.Status, 'critical');
  t.is(expired?.Output, 'TTL expired');
  clock.advance(30_000);
  t.truthy((await call(base, 'GET', '/v1/agent/service/worker')).status === 200);
  clock.advance(31_000);
  t.is((await call(base, 'GET', '/v1/agent/service/worker')).status, 404);
  t.deepEqual((await call(base, 'GET', '/v1/health/service/worker')).json, []);
  // Non-TTL and unknown checks cannot be heartbeated.
  t.is((await call(base, 'PUT', '/v1/agent/check/pass/nope')).status, 404);
});
