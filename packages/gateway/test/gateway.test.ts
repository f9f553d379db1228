import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import test from 'ava';
import { ManualClock, freePort, waitFor } from '@meshfed/testkit';
import { RouteTable } from '../src/index.js';
import {
  captureHello,
  closed,
  httpsBackend,
  listen,
  makePki,
  readLine,
  shapedTransport,
  startGateway,
  tlsBackend,
  tlsClient,
} from './fixtures.js';

const run = promisify(execFile);
const A = 'a.svc.test';
const B = 'b.svc.test';

test('routes by SNI to the right backend; the client verifies the backend certificate end to end', async (t) => {
  const pki = makePki(t, [A, B]);
  const pa = await tlsBackend(t, pki, A);
  const pb = await tlsBackend(t, pki, B);
  const { port, registry } = await startGateway(t, [
    `${A}=127.0.0.1:${pa}`,
    `*.b.svc.test=127.0.0.1:${pb}`,
    `${B}=127.0.0.1:${pb}`,
  ]);
  const ca = await tlsClient(port, A, pki.ca);
  t.true(ca.authorized, 'client authorized the backend certificate through the gateway');
  t.is(await readLine(ca), A);
  ca.write('hello through the gateway\n');
  t.is(await readLine(ca), 'hello through the gateway');
  const cb = await tlsClient(port, B, pki.ca);
  t.is(await readLine(cb), B);
  ca.end();
  cb.end();
  await Promise.all([closed(ca), closed(cb)]);
  const text = registry.render();
  t.regex(text, /gateway_connections_total\{class="static",dc="local"\} 2/);
  t.regex(text, /gateway_client_hello_wait_seconds_count 2/);
});

test('openssl s_client and curl --connect-to reach the backend through the gateway and verify it', async (t) => {
  const pki = makePki(t, [A, B]);
  const pa = await tlsBackend(t, pki, A);
  const pb = await httpsBackend(t, pki, B);
  const { port } = await startGateway(t, [`${A}=127.0.0.1:${pa}`, `${B}=127.0.0.1:${pb}`]);
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/gw-ca-');
  writeFileSync(`${dir}/ca.pem`, pki.ca);
  const child = spawn(
    'openssl',
    [
      's_client',
      '-connect',
      `127.0.0.1:${port}`,
      '-servername',
      A,
      '-CAfile',
      `${dir}/ca.pem`,
      '-verify_return_error',
      '-verify_hostname',
      A,
      '-quiet',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  t.teardown(() => child.kill());
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes(A), { what: 'backend name from openssl' });
  child.stdin.write('ping-openssl\n');
  await waitFor(() => out.includes('ping-openssl'), { what: 'echo via openssl' });
  child.stdin.end();
  const { stdout } = await run('curl', [
    '-sS',
    '--cacert',
    `${dir}/ca.pem`,
    '--connect-to',
    `${B}:443:127.0.0.1:${port}`,
    `https://${B}/`,
  ]);
  t.is(stdout, B);
});

test('unknown SNI, no SNI and plain HTTP are closed and counted by reason, without a label per SNI', async (t) => {
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A);
  const { port, registry } = await startGateway(t, [`${A}=127.0.0.1:${pa}`]);
  await t.throwsAsync(tlsClient(port, 'scanner-1234.example', pki.ca));
  await t.throwsAsync(tlsClient(port, 'scanner-5678.example', pki.ca));
  await t.throwsAsync(tlsClient(port, undefined, pki.ca));
  const plain = net.connect(port, '127.0.0.1');
  plain.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await closed(plain);
  const text = registry.render();
  t.regex(text, /gateway_no_route_total\{reason="unknown_sni"\} 2/);
  t.regex(text, /gateway_no_route_total\{reason="no_sni"\} 1/);
  t.regex(text, /gateway_no_route_total\{reason="not_tls"\} 1/);
  t.notRegex(text, /scanner/);
});

test('a ClientHello dribbled one byte at a time, and one split over several records, still routes', async (t) => {
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A);
  const { port, registry } = await startGateway(t, [`${A}=127.0.0.1:${pa}`]);
  const dribbled = await tlsClient(port, A, pki.ca, shapedTransport(port, { dribble: true }));
  t.is(await readLine(dribbled), A);
  const records = await tlsClient(port, A, pki.ca, shapedTransport(port, { records: 4 }));
  t.is(await readLine(records), A);
  const both = await tlsClient(port, A, pki.ca, shapedTransport(port, { records: 3, dribble: true }));
  t.is(await readLine(both), A);
  t.regex(registry.render(), /gateway_connections_total\{class="static",dc="local"\} 3/);
});

test('a refusing endpoint is retried transparently on another, then ejected after repeated failures', async (t) => {
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A);
  const dead = await freePort();
  const { port, registry, gw } = await startGateway(t, [`${A}=127.0.0.1:${dead},127.0.0.1:${pa}`], {
    ejectAfterFailures: 2,
  });
  for (let i = 0; i < 4; i++) {
    const c = await tlsClient(port, A, pki.ca);
    t.is(await readLine(c), A, `connection ${i} reached the live endpoint`);
    c.destroy();
  }
  const text = registry.render();
  t.regex(
    text,
    /gateway_upstream_connect_failures_total\{class="static",dc="local"\} 2/,
    'round robin tried the dead one twice, then it was ejected',
  );
  t.regex(text, /gateway_endpoint_ejections_total 1/);
  t.true(gw.endpointHealth().some((e) => e.endpoint === `127.0.0.1:${dead}` && e.ejected));
});

test('when every endpoint refuses, the client is closed and counted as upstream_failed', async (t) => {
  const pki = makePki(t, [A]);
  const { port, registry } = await startGateway(t, [
    `${A}=127.0.0.1:${await freePort()},127.0.0.1:${await freePort()}`,
  ]);
  await t.throwsAsync(tlsClient(port, A, pki.ca));
  t.regex(registry.render(), /gateway_no_route_total\{reason="upstream_failed"\} 1/);
});

test('a backend reset mid-stream resets the client; nothing stays open', async (t) => {
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A, (s) => {
    s.write('first\n');
    s.once(
      'data',
      () => (s as unknown as { _parent?: net.Socket })._parent?.resetAndDestroy() ?? s.destroy(),
    );
  });
  // The TLS socket wraps the TCP one; reset the TCP socket underneath.
  const { port, gw } = await startGateway(t, [`${A}=127.0.0.1:${pa}`]);
  const c = await tlsClient(port, A, pki.ca);
  t.is(await readLine(c), 'first');
  c.write('now reset\n');
  const err = await closed(c);
  t.truthy(err, 'the client saw an error (reset), not a clean end');
  await waitFor(() => gw.activeConnections === 0, { what: 'gateway connection cleanup' });
  t.pass();
});

test('half-close passes through: client FIN reaches the backend, which still answers', async (t) => {
  const hello = await captureHello(A);
  let received = Buffer.alloc(0);
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
    s.on('end', () => s.end('bye after your FIN'));
  });
  const pb = await listen(t, backend);
  const { port, gw } = await startGateway(t, [`${A}=127.0.0.1:${pb}`]);
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let answer = '';
  c.on('data', (d: Buffer) => (answer += d.toString()));
  const ended = new Promise<void>((r) => c.once('end', () => r()));
  c.write(hello);
  c.end(Buffer.from('tail-bytes'));
  await ended;
  t.is(answer, 'bye after your FIN');
  t.deepEqual(
    received,
    Buffer.concat([hello, Buffer.from('tail-bytes')]),
    'bytes arrived exactly, hello replayed first',
  );
  c.destroy();
  await waitFor(() => gw.activeConnections === 0, { what: 'cleanup' });
});

test('a slow reader does not make the gateway buffer without bound (backpressure)', async (t) => {
  const hello = await captureHello(A);
  let written = 0;
  let stalled = false;
  const chunk = Buffer.alloc(64 * 1024, 7);
  const backend = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => {
      const pump = (): void => {
        while (s.write(chunk)) {
          written += chunk.length;
          if (written > 256 * 1024 * 1024) return;
        }
        written += chunk.length;
        stalled = true;
        s.once('drain', () => {
          stalled = false;
          pump();
        });
      };
      pump();
    });
  });
  const pb = await listen(t, backend);
  const { port } = await startGateway(t, [`${A}=127.0.0.1:${pb}`]);
  const c = net.connect(port, '127.0.0.1');
  c.write(hello);
  c.pause(); // never read
  // Kernel socket buffers fill first (and autotune); wait until the backend stays stalled.
  await waitFor(
    async () => {
      const at = written;
      await new Promise((r) => setTimeout(r, 300));
      return stalled && written === at;
    },
    { what: 'backend stalled by backpressure', timeoutMs: 20_000 },
  );
  t.true(written < 32 * 1024 * 1024, `bounded buffering: ${written} bytes in flight`);
  c.destroy();
});

test('ClientHello deadline: a slowloris is closed when the clock says so', async (t) => {
  const clock = new ManualClock();
  const { port, registry, gw } = await startGateway(
    t,
    ['x.test=127.0.0.1:1'],
    { helloTimeoutMs: 5000 },
    clock,
  );
  const c = net.connect(port, '127.0.0.1');
  c.write(Buffer.from([0x16, 0x03, 0x01]));
  await waitFor(() => gw.activeConnections === 1, { what: 'accepted' });
  clock.advance(4999);
  t.false(c.destroyed);
  clock.advance(1);
  await closed(c);
  t.regex(registry.render(), /gateway_no_route_total\{reason="hello_timeout"\} 1/);
  await waitFor(() => gw.activeConnections === 0, { what: 'cleanup' });
});

test('per-IP connection limit refuses the excess and counts it', async (t) => {
  const { port, registry, gw } = await startGateway(t, ['x.test=127.0.0.1:1'], { maxConnectionsPerIp: 2 });
  const a = net.connect(port, '127.0.0.1');
  const b = net.connect(port, '127.0.0.1');
  await waitFor(() => gw.activeConnections === 2, { what: 'two accepted' });
  const c = net.connect(port, '127.0.0.1');
  await closed(c);
  t.regex(registry.render(), /gateway_connections_rejected_total\{reason="ip_limit"\} 1/);
  a.destroy();
  b.destroy();
  await waitFor(() => gw.activeConnections === 0, { what: 'cleanup' });
  const d = net.connect(port, '127.0.0.1');
  await waitFor(() => gw.activeConnections === 1, { what: 'accepted again after the others left' });
  d.destroy();
});

test('a new routing table applies to new connections and never cuts established ones', async (t) => {
  const pki = makePki(t, [A]);
  const p1 = await tlsBackend(t, pki, A, (s) => {
    s.write('one\n');
    s.pipe(s);
  });
  const p2 = await tlsBackend(t, pki, A, (s) => {
    s.write('two\n');
    s.pipe(s);
  });
  const { port, gw } = await startGateway(t, [`${A}=127.0.0.1:${p1}`]);
  const old = await tlsClient(port, A, pki.ca);
  t.is(await readLine(old), 'one');
  gw.setRoutes(
    new RouteTable([
      { match: A, class: 'static', datacenter: 'local', endpoints: [{ host: '127.0.0.1', port: p2 }] },
    ]),
  );
  const fresh = await tlsClient(port, A, pki.ca);
  t.is(await readLine(fresh), 'two');
  old.write('still here\n');
  t.is(await readLine(old), 'still here');
  old.destroy();
  fresh.destroy();
});

test('graceful drain: stops accepting, lets open connections finish, then closes', async (t) => {
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A);
  const { port, gw } = await startGateway(t, [`${A}=127.0.0.1:${pa}`], { drainTimeoutMs: 20_000 });
  const c = await tlsClient(port, A, pki.ca);
  t.is(await readLine(c), A);
  let closedDone = false;
  const closing = gw.close().then(() => (closedDone = true));
  t.false(gw.ready());
  await t.throwsAsync(tlsClient(port, A, pki.ca), undefined, 'no new connections while draining');
  c.write('during drain\n');
  t.is(await readLine(c), 'during drain');
  t.false(closedDone);
  c.end();
  await closing;
  t.true(closedDone);
});

test('drain deadline: connections still open at the deadline are closed', async (t) => {
  const clock = new ManualClock();
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A);
  const { port, gw } = await startGateway(t, [`${A}=127.0.0.1:${pa}`], { drainTimeoutMs: 10_000 }, clock);
  const c = await tlsClient(port, A, pki.ca);
  t.is(await readLine(c), A);
  const closing = gw.close();
  await waitFor(() => clock.pending > 0, { what: 'drain timer' });
  clock.advance(10_000);
  await closed(c);
  await closing;
  t.is(gw.activeConnections, 0);
});

test('idle timeout: a connection silent both ways is closed by the sweep; a busy one is not', async (t) => {
  const clock = new ManualClock();
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A);
  const { port, registry } = await startGateway(
    t,
    [`${A}=127.0.0.1:${pa}`],
    { idleTimeoutMs: 60_000 },
    clock,
  );
  const quiet = await tlsClient(port, A, pki.ca);
  const busy = await tlsClient(port, A, pki.ca);
  t.is(await readLine(quiet), A);
  t.is(await readLine(busy), A);
  for (let i = 0; i < 5; i++) {
    busy.write(`tick ${i}\n`);
    t.is(await readLine(busy), `tick ${i}`);
    clock.advance(15_000);
    if (i === 0) {
      t.false(quiet.destroyed);
      const up = /gateway_bytes_total\{class="static",dc="local",direction="to_upstream"\} (\d+)/.exec(
        registry.render(),
      );
      t.true(Number(up?.[1]) > 0, 'bytes of open connections are counted by the sweep, before any close');
    }
  }
  await closed(quiet);
  t.false(busy.destroyed, 'the busy connection survives');
  t.regex(registry.render(), /gateway_idle_closed_total 1/);
  busy.destroy();
});

test('drain closes connections that never sent a ClientHello at once', async (t) => {
  const { port, gw } = await startGateway(t, ['x.test=127.0.0.1:1'], { drainTimeoutMs: 60_000 });
  const c = net.connect(port, '127.0.0.1');
  await waitFor(() => gw.activeConnections === 1, { what: 'accepted' });
  await gw.close();
  await closed(c);
  t.is(gw.activeConnections, 0);
});

test('a TCP health check (connect, send nothing, close) counts as empty; a reset mid-hello as malformed', async (t) => {
  const hello = await captureHello(A);
  const { port, gw, registry } = await startGateway(t, ['x.test=127.0.0.1:1']);
  const check = net.connect(port, '127.0.0.1');
  await new Promise((r) => check.once('connect', r));
  check.end();
  await closed(check);
  const partial = net.connect(port, '127.0.0.1');
  partial.write(hello.subarray(0, 40));
  await waitFor(() => gw.activeConnections === 1, { what: 'partial hello accepted' });
  partial.resetAndDestroy();
  await waitFor(() => gw.activeConnections === 0, { what: 'cleanup' });
  const text = registry.render();
  t.regex(text, /gateway_no_route_total\{reason="empty"\} 1/);
  t.regex(text, /gateway_no_route_total\{reason="malformed"\} 1/);
  t.regex(text, /gateway_client_hello_errors_total\{reason="malformed"\} 1/);
  t.notRegex(text, /gateway_client_hello_errors_total\{reason="empty"\}/);
});

test('least_conn sends a new connection to the endpoint with fewer open connections', async (t) => {
  const pki = makePki(t, [A]);
  const p1 = await tlsBackend(t, pki, A, (s) => void s.write('one\n'));
  const p2 = await tlsBackend(t, pki, A, (s) => void s.write('two\n'));
  const { port, gw } = await startGateway(t, [`${A}=127.0.0.1:${p1},127.0.0.1:${p2}`], {
    balance: 'least_conn',
  });
  const held = [await tlsClient(port, A, pki.ca), await tlsClient(port, A, pki.ca)];
  const first = await Promise.all(held.map(readLine));
  t.deepEqual(first, ['one', 'two'], 'spread over both');
  // Close the one on endpoint 2. Round robin would now pick endpoint 1 (its turn); least_conn
  // must pick endpoint 2, which has no open connection.
  held[1]!.destroy();
  await waitFor(() => gw.endpointHealth().find((e) => e.endpoint === `127.0.0.1:${p2}`)?.active === 0, {
    what: 'gateway saw the close',
  });
  const next = await tlsClient(port, A, pki.ca);
  t.is(await readLine(next), 'two');
  next.destroy();
  held[0]!.destroy();
});
