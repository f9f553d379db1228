import { spawn } from 'node:child_process';
import net from 'node:net';
import test from 'ava';
import fc from 'fast-check';
import { parseClientHello } from '../src/index.js';
import { captureHello, splitRecords } from './fixtures.js';

/** The first ClientHello record an external client (openssl, curl) sends to a capturing listener. */
async function captureFrom(cmd: (port: number) => [string, string[]]): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const [bin, args] = cmd(port);
  const child = spawn(bin, args, { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    return await new Promise<Buffer>((resolve) => {
      server.on('connection', (s) => {
        let acc = Buffer.alloc(0);
        s.on('data', (c: Buffer) => {
          acc = Buffer.concat([acc, c]);
          if (acc.length >= 5 && acc.length >= 5 + acc.readUInt16BE(3)) {
            resolve(acc.subarray(0, 5 + acc.readUInt16BE(3)));
            s.destroy();
          }
        });
      });
    });
  } finally {
    child.kill();
    server.close();
  }
}

const SNI = 'web.default.dc2.internal.11111111-2222-3333-4444-555555555555.consul';

async function realHellos(): Promise<{ from: string; hello: Buffer }[]> {
  return [
    { from: 'node tls1.3', hello: await captureHello(SNI, { ALPNProtocols: ['h2', 'consul/rpc-multi'] }) },
    { from: 'node tls1.2', hello: await captureHello(SNI, { maxVersion: 'TLSv1.2' }) },
    {
      from: 'openssl',
      hello: await captureFrom((p) => [
        'openssl',
        ['s_client', '-connect', `127.0.0.1:${p}`, '-servername', SNI, '-alpn', 'consul/raft'],
      ]),
    },
    {
      from: 'curl',
      hello: await captureFrom((p) => [
        'curl',
        ['-sk', '--max-time', '5', '--connect-to', `${SNI}:443:127.0.0.1:${p}`, `https://${SNI}/`],
      ]),
    },
  ];
}

test('reads SNI and ALPN from real ClientHellos of node (TLS 1.2 and 1.3), openssl and curl', async (t) => {
  const hellos = await realHellos();
  for (const { from, hello } of hellos) {
    const r = parseClientHello(hello);
    t.is(r.status, 'ok', from);
    if (r.status !== 'ok') continue;
    t.is(r.sni, SNI, from);
    if (from === 'node tls1.3') t.deepEqual(r.alpn, ['h2', 'consul/rpc-multi']);
    if (from === 'openssl') t.deepEqual(r.alpn, ['consul/raft']);
    // every prefix asks for more; over several records it still parses
    for (let i = 0; i < hello.length; i += 7)
      t.is(parseClientHello(hello.subarray(0, i)).status, 'more', `${from} prefix ${i}`);
    const split = parseClientHello(splitRecords(hello, 5));
    t.like(split, { status: 'ok', sni: SNI }, `${from} in 5 records`);
    // split into TCP chunks, passed as an array
    t.like(parseClientHello([hello.subarray(0, 3), hello.subarray(3, 50), hello.subarray(50)]), {
      status: 'ok',
      sni: SNI,
    });
  }
});

test('no SNI, GREASE and unusual extension order', async (t) => {
  const none = await captureHello(undefined);
  t.like(parseClientHello(none), { status: 'ok', sni: undefined });
  // Build a hello by hand: GREASE extension first, ALPN before SNI.
  const ext = (type: number, body: Buffer): Buffer => {
    const h = Buffer.alloc(4);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(body.length, 2);
    return Buffer.concat([h, body]);
  };
  const name = Buffer.from('x.example');
  const sni = Buffer.alloc(5);
  sni.writeUInt16BE(name.length + 3, 0);
  sni[2] = 0;
  sni.writeUInt16BE(name.length, 3);
  const alpnProto = Buffer.from([2, 0x68, 0x32]);
  const alpn = Buffer.concat([Buffer.from([0, alpnProto.length]), alpnProto]);
  const exts = Buffer.concat([
    ext(0x0a0a, Buffer.alloc(0)),
    ext(16, alpn),
    ext(0, Buffer.concat([sni, name])),
    ext(0xfafa, Buffer.from([0])),
  ]);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 1),
    Buffer.from([0]),
    Buffer.from([0, 4, 0x3a, 0x3a, 0x13, 0x01]),
    Buffer.from([1, 0]),
    Buffer.from([exts.length >> 8, exts.length & 255]),
    exts,
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 255]), body]);
  const rec = Buffer.concat([Buffer.from([0x16, 3, 1, hs.length >> 8, hs.length & 255]), hs]);
  t.deepEqual(parseClientHello(rec), { status: 'ok', sni: 'x.example', alpn: ['h2'] });
});

test('not TLS, malformed and oversized inputs are errors, never exceptions', (t) => {
  t.like(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')), { status: 'error', reason: 'not_tls' });
  t.like(parseClientHello(Buffer.from([0x16, 0x02])), { status: 'error', reason: 'not_tls' });
  t.like(parseClientHello(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0])), {
    status: 'error',
    reason: 'malformed',
  });
  t.like(parseClientHello(Buffer.from([0x16, 3, 1, 0, 4, 1, 0x01, 0, 0]), 16384), {
    status: 'error',
    reason: 'too_large',
  });
});

test('fuzz: mutated and truncated real ClientHellos and random bytes never throw or hang', async (t) => {
  const hellos = (await realHellos()).map((h) => h.hello);
  const outcomes = new Map<string, number>();
  const count = (k: string): void => void outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  const mutated = fc
    .tuple(
      fc.constantFrom(...hellos),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      fc.option(fc.nat()),
    )
    .map(([h, flips, cut]) => {
      const b = Buffer.from(h);
      for (const [pos, v] of flips) b[pos % b.length] = v;
      return cut === null ? b : b.subarray(0, cut % (b.length + 1));
    });
  const random = fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u));
  const tlsish = fc
    .uint8Array({ maxLength: 600 })
    .map((u) => Buffer.concat([Buffer.from([0x16, 3, 1]), Buffer.from(u)]));
  fc.assert(
    fc.property(fc.oneof(mutated, random, tlsish), (input) => {
      // parse is synchronous and bounded by the input: a hang would hit ava's timeout
      const r = parseClientHello(input);
      count(r.status === 'error' ? r.reason : r.status);
      return r.status !== 'ok' || r.sni === undefined || /^[a-z0-9._*-]+$/.test(r.sni);
    }),
    { numRuns: 20_000 },
  );
  t.log(Object.fromEntries(outcomes));
  t.true(
    (outcomes.get('malformed') ?? 0) > 0 &&
      (outcomes.get('ok') ?? 0) > 0 &&
      (outcomes.get('not_tls') ?? 0) > 0,
  );
});
