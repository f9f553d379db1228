import { createHash, randomBytes, type Hash } from 'node:crypto';
import net from 'node:net';
import test from 'ava';
import { freePort, tempDir, waitFor } from '@meshfed/testkit';
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

test('16 MB each way through the pair, byte-exact, with a slow reader at each end', async (t) => {
  // Exercises the relay's backpressure and its reuse of read buffers (a buffer still referenced
  // by a queued write must not be overwritten by the next read).
  const dir = tempDir(t);
  const ca = TestCa.create(dir, '11111111-2222-3333-4444-555555555555.consul');
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const payload = randomBytes(16 * 1024 * 1024);
  const sha = (b: Buffer | Hash): string =>
    (Buffer.isBuffer(b) ? createHash('sha256').update(b) : b).digest('hex');
  /** Read everything, pausing 10 ms after every 256 kB; resolve with byte count and hash. */
  const slowRead = (s: net.Socket): Promise<{ bytes: number; sha: string }> =>
    new Promise((resolve) => {
      const h = createHash('sha256');
      let bytes = 0;
      let next = 1 << 18;
      s.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
        if (bytes >= next) {
          next += 1 << 18;
          s.pause();
          setTimeout(() => s.resume(), 10);
        }
      });
      s.on('end', () => resolve({ bytes, sha: sha(h) }));
      s.on('error', () => resolve({ bytes, sha: sha(h) }));
    });
  const writeAll = (s: net.Socket): void => {
    let off = 0;
    const pump = (): void => {
      while (off < payload.length) {
        const chunk = payload.subarray(off, off + 65536);
        off += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  };
  // The app: 'D' → sends the payload; 'U' → reads slowly what follows.
  let uploaded!: Promise<{ bytes: number; sha: string }>;
  const app = net.createServer((s) => {
    s.once('data', (first: Buffer) => {
      if (first[0] === 0x44) writeAll(s);
      else {
        s.pause();
        s.unshift(first.subarray(1));
        uploaded = slowRead(s);
        s.resume();
      }
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.teardown(() => app.close());
  const b = await startSidecar(t, fake, ca, {
    service: 'counting',
    appPort: (app.address() as net.AddressInfo).port,
  });
  setHealth(fake, 'counting', undefined, [sidecarEntry('counting', b.port)]);
  const upPort = await freePort();
  await startSidecar(t, fake, ca, {
    service: 'dashboard',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort }],
  });

  const down = net.connect(upPort, '127.0.0.1', () => down.write('D'));
  const got = await slowRead(down);
  t.is(got.bytes, payload.length, 'download length');
  t.is(got.sha, sha(payload), 'download content');

  const up = net.connect(upPort, '127.0.0.1');
  up.on('error', () => undefined);
  up.write('U');
  writeAll(up);
  await new Promise((r) => up.on('close', r));
  await waitFor(() => uploaded !== undefined, { what: 'upload started' });
  const rec = await uploaded;
  t.is(rec.bytes, payload.length, 'upload length');
  t.is(rec.sha, sha(payload), 'upload content');
});
