import { readdirSync } from 'node:fs';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import test from 'ava';
import fc from 'fast-check';
import { waitFor } from '@meshfed/testkit';
import { captureHello, closed, listen, startGateway } from './fixtures.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const fds = (): number => readdirSync('/proc/self/fd').length;

const A = 'a.leak.test';

/** One short connection: hello + a line, read the echo, close. */
function shortConn(port: number, hello: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    let got = 0;
    c.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= hello.length + 4) c.end();
    });
    c.on('error', reject);
    c.on('close', () => resolve());
    c.write(Buffer.concat([hello, Buffer.from('ping')]));
  });
}

test('thousands of short connections leave no fds, timers or heap behind', async (t) => {
  const hello = await captureHello(A);
  const backend = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const pb = await listen(t, backend);
  const { port, gw, registry } = await startGateway(t, [`${A}=127.0.0.1:${pb}`]);
  const round = async (n: number): Promise<void> => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next++ < n) await shortConn(port, hello);
      }),
    );
  };
  await round(300); // warm up JIT, pools and metric children
  await waitFor(() => gw.activeConnections === 0, { what: 'idle after warm-up' });
  gc();
  const fd0 = fds();
  const heap0 = process.memoryUsage().heapUsed;
  const N = 4000;
  await round(N);
  await waitFor(() => gw.activeConnections === 0, { what: 'idle after the run' });
  await waitFor(() => fds() <= fd0 + 2, { what: `fds back to baseline ${fd0}` });
  gc();
  const heap1 = process.memoryUsage().heapUsed;
  t.log({ fd0, fd1: fds(), heap0, heap1 });
  t.true(heap1 - heap0 < 4 * 1024 * 1024, `heap grew by ${heap1 - heap0} bytes over ${N} connections`);
  t.regex(
    registry.render(),
    new RegExp(`gateway_connections_total\\{class="static",dc="local"\\} ${N + 300}`),
  );
});

test('fuzzed bytes over real sockets: every connection is closed cleanly and counted', async (t) => {
  const hello = await captureHello(A);
  const backend = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const pb = await listen(t, backend);
  const { port, gw, registry } = await startGateway(t, [`${A}=127.0.0.1:${pb}`]);
  const inputs = fc.sample(
    fc.oneof(
      fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat()).map(([pos, v, cut]) => {
        const b = Buffer.from(hello);
        b[pos % b.length] = v;
        return b.subarray(0, 1 + (cut % b.length));
      }),
      fc.uint8Array({ minLength: 1, maxLength: 400 }).map((u) => Buffer.from(u)),
    ),
    { numRuns: 200, seed: 42 },
  );
  for (const input of inputs) {
    const c = net.connect({ port, host: '127.0.0.1' });
    c.on('data', () => undefined);
    c.end(input); // send, then FIN: the gateway must close either way
    await closed(c);
  }
  await waitFor(() => gw.activeConnections === 0, { what: 'all closed' });
  const snap = registry.snapshot();
  const sum = (name: string): number =>
    snap.find((m) => m.name === name)?.series.reduce((a, s) => a + s.value, 0) ?? 0;
  t.is(
    sum('gateway_no_route_total') + sum('gateway_connections_total'),
    inputs.length,
    'every connection counted once',
  );
});
