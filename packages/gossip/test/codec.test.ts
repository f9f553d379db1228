// Byte-exactness against Go: the fixtures were printed by test/fixtures/go-golden.go.txt, built with
// Debian's golang-go 1.19 and golang-github-hashicorp-go-msgpack-dev 0.5.5 (GOPATH mode), plus Go's
// compress/lzw. Regenerate: GO111MODULE=off GOPATH=<dir>:/usr/share/gocode go run <dir>/src/gold.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Keyring, keygen, lzwCompress, lzwDecompress, msgpack, wire } from '../src/index.js';
import { encodeTags, decodeTags } from '../src/gossip-pool.js';

const golden = JSON.parse(
  readFileSync(new URL('../../test/fixtures/go-golden.json', import.meta.url), 'utf8'),
) as Record<string, string>;
const g = (k: string): string => golden[k] ?? `missing fixture ${k}`;
const hex = (b: Buffer): string => b.toString('hex');
const ip = Buffer.from([127, 0, 0, 1]);
const { encode, decode, F64 } = msgpack;

test('memberlist messages encode byte-for-byte as Go does', (t) => {
  const meta = Buffer.concat([Buffer.from([0xff]), encode({ role: 'web' })]);
  t.is(
    hex(
      wire
        .encodeAlive({
          incarnation: 1,
          node: 'node-proto',
          addr: ip,
          port: 17950,
          meta,
          vsn: [1, 5, 2, 2, 5, 5],
        })
        .subarray(1),
    ),
    g('alive'),
  );
  t.is(
    hex(
      wire
        .encodePing({
          seqNo: 42,
          node: 'agent-a',
          sourceAddr: ip,
          sourcePort: 17950,
          sourceNode: 'node-proto',
        })
        .subarray(1),
    ),
    g('ping'),
  );
  t.is(hex(wire.encodePing({ seqNo: 7, node: '' }).subarray(1)), g('ping_min'));
  t.is(hex(wire.encodeAck({ seqNo: 300 }).subarray(1)), g('ack'));
  t.is(
    hex(
      wire
        .encodeDead({ incarnation: 70000, node: 'a-node-with-a-rather-long-name-x', from: 'b' })
        .subarray(1),
    ),
    g('dead'),
  );
  t.is(hex(encode({ Join: true, Nodes: 3, UserStateLen: 700 })), g('pushPullHeader'));
  t.is(
    hex(wire.encodeIndirect({ seqNo: 9, target: ip, port: 7946, node: 't', nack: true }).subarray(1)),
    g('indirect'),
  );
});

test('serf messages encode byte-for-byte as Go does, including uint64 and int64 nanoseconds', (t) => {
  t.is(hex(encode({ CC: true, LTime: 5, Name: 'deploy', Payload: Buffer.from('v1.2.3') })), g('userEvent'));
  t.is(hex(encode({ LTime: 1n << 40n, Node: 'n' })), g('join'));
  const q = {
    Addr: ip,
    Filters: null,
    Flags: 1,
    ID: 0xdeadbeef,
    LTime: 3,
    Name: 'whoami',
    Payload: Buffer.from('ping'),
    Port: 17950,
    RelayFactor: 0,
    SourceNode: 'x',
    Timeout: 8_000_000_000n,
  };
  t.is(hex(encode(q)), g('query'));
});

test('the raw-preserving decoder keeps binary str values and big integers intact', (t) => {
  const meta = Buffer.from([0xff, 0x82, 0xa4, 0x80, 0x81, 0xfe]);
  const d = msgpack.asMap(decode(encode({ Meta: meta, Big: 2n ** 63n + 5n, F: new F64(0) })));
  t.deepEqual(d['Meta'], meta);
  t.is(d['Big'], 2n ** 63n + 5n);
  t.is(d['F'], 0);
  t.throws(() => msgpack.decodeAt(Buffer.from('da0010', 'hex'), 0), { instanceOf: msgpack.NeedMore });
});

test('LZW output is identical to Go compress/lzw and decodes Go output, across the 12-bit reset', (t) => {
  t.is(hex(lzwCompress(Buffer.alloc(0))), g('lzw_empty'));
  t.is(hex(lzwCompress(Buffer.from('TOBEORNOTTOBEORTOBEORNOT#'))), g('lzw_hello'));
  t.is(hex(lzwCompress(Buffer.alloc(5000, 'a'))), g('lzw_aaa'));
  const big = Buffer.alloc(200_000);
  let x = 1;
  for (let i = 0; i < big.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    big[i] = ((x >>> 16) % 4) + 0x61;
  }
  t.is(hex(lzwCompress(big)), g('lzw_big'));
  t.deepEqual(lzwDecompress(Buffer.from(g('lzw_big'), 'hex')), big);
  t.deepEqual(lzwDecompress(Buffer.from(g('lzw_aaa'), 'hex')), Buffer.alloc(5000, 'a'));
  t.throws(() => lzwDecompress(Buffer.from('ff', 'hex')));
});

test('tags are ff + a sorted msgpack map, and the pre-v3 form decodes as a role', (t) => {
  t.is(hex(encodeTags({})), 'ff80');
  t.deepEqual(decodeTags(encodeTags({ z: '1', a: '2' })), { a: '2', z: '1' });
  t.is(hex(encodeTags({ z: '1', a: '2' })), 'ff82a161a132a17aa131');
  t.deepEqual(decodeTags(Buffer.from('web')), { role: 'web' });
});

test('keyring: version 1 AES-GCM round trip, stream AAD bound, wrong key and tampering rejected', (t) => {
  const k1 = keygen();
  const k2 = keygen();
  const ring = new Keyring([k1, k2]);
  const sealed = ring.encrypt(Buffer.from('hello'));
  t.is(sealed[0], 1);
  t.is(sealed.length, 5 + 29);
  t.deepEqual(ring.decrypt(sealed), Buffer.from('hello'));
  t.deepEqual(new Keyring([k2, k1]).decrypt(sealed), Buffer.from('hello'));
  t.is(new Keyring([keygen()]).decrypt(sealed), undefined);
  const bad = Buffer.from(sealed);
  bad[10]! ^= 1;
  t.is(ring.decrypt(bad), undefined);
  const aad = Buffer.from([10, 0, 0, 0, 34]);
  const s2 = ring.encrypt(Buffer.from('x'), aad);
  t.is(ring.decrypt(s2), undefined);
  t.deepEqual(ring.decrypt(s2, aad), Buffer.from('x'));
  t.throws(() => new Keyring(['c2hvcnQ=']), { message: /16, 24 or 32/ });
  t.throws(() => ring.remove(ring.primary!), { message: /primary/ });
});

test('compound, CRC and compressed stream framing round-trip; bad CRC and truncated parts are caught', (t) => {
  const a = wire.encodePing({ seqNo: 1, node: 'a' });
  const b = wire.encodeAck({ seqNo: 2 });
  const c = wire.makeCompound([a, b]);
  t.deepEqual(wire.splitCompound(c.subarray(1)).parts, [a, b]);
  t.is(wire.splitCompound(c.subarray(1, c.length - 3)).truncated, 1);
  const crc = wire.addCrc(c);
  t.deepEqual(wire.checkCrc(crc), c);
  crc[7]! ^= 0xff;
  t.throws(() => wire.checkCrc(crc), { message: /crc/ });
  const ring = new Keyring([keygen()]);
  const pp = wire.encodePushPull({ join: true, nodes: [], userState: Buffer.from('xyz') });
  const stream = wire.wrapStream(pp, true, ring);
  t.throws(() => wire.parseStream(stream.subarray(0, 20), { keyring: ring, verifyIncoming: true }), {
    instanceOf: msgpack.NeedMore,
  });
  const m = wire.parseStream(stream, { keyring: ring, verifyIncoming: true });
  t.is(m.type, 'pushPull');
  t.throws(
    () => wire.parseStream(wire.wrapStream(pp, true, undefined), { keyring: ring, verifyIncoming: true }),
    {
      message: /plaintext/,
    },
  );
});
