// Real sockets: a small cluster on UDP/TCP loopback, and hostile input (garbage, truncated,
// oversized, replayed, wrong-key packets and streams) dropped, counted, and survived.
import test from 'ava';
import { createSocket } from 'node:dgram';
import { createConnection } from 'node:net';
import { silentLogger, systemClock } from '@meshfed/core';
import { freePort, waitFor } from '@meshfed/testkit';
import { GossipPool, Keyring, keygen, WanPool, wire, type GossipPoolOptions } from '../src/index.js';

async function pool(
  t: { teardown(fn: () => unknown): void },
  o: Partial<GossipPoolOptions> & { nodeName: string },
) {
  const p = new GossipPool(
    { bindAddr: '127.0.0.1', bindPort: await freePort(), profile: 'local', ...o },
    { logger: silentLogger, clock: systemClock },
  );
  t.teardown(() => p.close());
  await p.start();
  return p;
}

function sendUdp(port: number, buf: Buffer): Promise<void> {
  const s = createSocket('udp4');
  return new Promise((r) => s.send(buf, port, '127.0.0.1', () => (s.close(), r())));
}

test('five nodes on real UDP loopback converge and detect a crashed node', async (t) => {
  const pools: GossipPool[] = [];
  for (let i = 0; i < 5; i++) pools.push(await pool(t, { nodeName: `udp-${i}` }));
  for (const p of pools.slice(1)) await p.join([`127.0.0.1:${pools[0]!.address.port}`]);
  await waitFor(() => pools.every((p) => p.members().filter((m) => m.status === 'alive').length === 5), {
    timeoutMs: 20_000,
    what: 'all five see five alive',
  });
  await pools[4]!.close();
  await waitFor(
    () => pools.slice(0, 4).every((p) => p.members().find((m) => m.name === 'udp-4')?.status === 'failed'),
    { timeoutMs: 45_000, what: 'the crash detected by the other four' },
  );
  t.pass();
});

test('garbage, truncated, oversized, replayed and wrong-key input is dropped and counted; the node keeps working', async (t) => {
  const key = keygen();
  const a = await pool(t, { nodeName: 'victim', keys: [key] });
  const b = await pool(t, { nodeName: 'friend', keys: [key] });
  await b.join([`127.0.0.1:${a.address.port}`]);
  const port = a.address.port;
  const ring = new Keyring([key]);
  const stats = a.memberlist.stats;

  await sendUdp(port, Buffer.from('not a gossip packet at all'));
  await sendUdp(port, ring.encrypt(Buffer.from([0x04, 0x86, 0xa4]))); // truncated alive
  await sendUdp(port, ring.encrypt(Buffer.from([0x63, 0x01]))); // unknown type
  await sendUdp(port, new Keyring([keygen()]).encrypt(wire.encodePing({ seqNo: 1, node: 'victim' }))); // wrong key
  await sendUdp(port, wire.encodePing({ seqNo: 1, node: 'victim' })); // plaintext when a key is required
  await sendUdp(port, ring.encrypt(Buffer.concat([Buffer.from([7, 2, 0, 50, 0, 50]), Buffer.alloc(10)]))); // truncated compound
  // a replayed, stale alive claiming an old incarnation of the friend is ignored by the incarnation rules
  const stale = ring.encrypt(
    wire.encodeAlive({
      incarnation: 0,
      node: 'friend',
      addr: Buffer.from([127, 0, 0, 1]),
      port: 1,
      meta: Buffer.alloc(0),
      vsn: [1, 5, 2, 2, 5, 5],
    }),
  );
  await sendUdp(port, stale);
  await sendUdp(port, stale);
  await waitFor(() => (stats.dropped['decrypt'] ?? 0) >= 2 && (stats.dropped['malformed'] ?? 0) >= 2, {
    what: 'drops counted',
  });
  t.true((stats.dropped['compound_truncated'] ?? 0) >= 1);

  // hostile streams: garbage, an oversized length prefix, and a stream that stops half-way
  for (const bytes of [
    Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff]),
    Buffer.from([0x0a, 0x00, 0x00, 0x01, 0x00, 1, 2, 3]),
  ]) {
    const s = createConnection({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.resume();
    await new Promise<void>((r) => s.on('connect', () => r()));
    s.end(bytes);
    await new Promise<void>((r) => s.on('close', () => r()));
  }
  await waitFor(() => stats.streamErrors >= 3, { what: 'stream errors counted' });

  // still a working member: the friend's event arrives, and the friend is still alive with its real port
  const got = new Promise<string>((r) => a.on('user', (e) => r(e.name)));
  b.userEvent('still-alive', '', false);
  t.is(await got, 'still-alive');
  const friend = a.members().find((m) => m.name === 'friend');
  t.is(friend?.status, 'alive');
  t.is(friend?.port, b.address.port);
  t.throws(() => b.userEvent('x', Buffer.alloc(600)), { message: /512-byte limit/ });
});

test('WanPool names the node <node>.<dc>, carries federation tags, and lists DCs and their servers', async (t) => {
  const mk = async (node: string, dc: string, fed: string) => {
    const w = new WanPool(
      {
        node,
        datacenter: dc,
        fedAddr: fed,
        wanGateways: ['203.0.113.1:8443', '203.0.113.2:8443'],
        build: '0.1.0',
        bindAddr: '127.0.0.1',
        bindPort: await freePort(),
        profile: 'local',
      },
      { logger: silentLogger, clock: systemClock },
    );
    t.teardown(() => w.close());
    await w.start();
    return w;
  };
  const a = await mk('s1', 'dc1', '127.0.0.1:8300');
  const b = await mk('s1', 'dc2', '127.0.0.1:9300');
  t.is(await b.retryJoin([`127.0.0.1:${a.pool.address.port}`]), 1);
  await waitFor(() => a.datacenters().length === 2, { what: 'two DCs' });
  t.deepEqual(a.datacenters(), ['dc1', 'dc2']);
  t.deepEqual(a.fedAddrs('dc2'), ['127.0.0.1:9300']);
  const s = a.servers().find((x) => x.datacenter === 'dc2');
  t.is(s?.node, 's1');
  t.deepEqual(s?.wanGateways, ['203.0.113.1:8443', '203.0.113.2:8443']);
  t.is(a.pool.localMember.name, 's1.dc1');
  t.throws(
    () =>
      new WanPool(
        { node: 'x', datacenter: 'bad dc', fedAddr: '' },
        { logger: silentLogger, clock: systemClock },
      ),
    {
      message: /invalid datacenter/,
    },
  );
});
