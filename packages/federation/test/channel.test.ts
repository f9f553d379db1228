import test from 'ava';
import { Registry, isMeshError, silentLogger, systemClock } from '@meshfed/core';
import { ManualClock, tempDir } from '@meshfed/testkit';
import {
  ChannelServer,
  channelMetrics,
  defaultChannelOptions,
  dialPeer,
  emptyHandlers,
  type Handlers,
} from '../src/index.js';
import { OpensslCa } from './fixtures/openssl-ca.js';

async function pair(
  t: { teardown(fn: () => unknown): void },
  handlers: Handlers,
  opts: Partial<typeof defaultChannelOptions> = {},
) {
  const dir = tempDir(t);
  const ca = await OpensslCa.primary(dir, 'dc1');
  const serverTls = await ca.serverTls('s1');
  const registry = new Registry();
  const server = new ChannelServer(
    {
      ...defaultChannelOptions,
      ...opts,
      datacenter: 'dc1',
      node: 's1',
      host: '127.0.0.1',
      port: 0,
      allowJoin: false,
    },
    {
      logger: silentLogger,
      clock: systemClock,
      metrics: channelMetrics(registry),
      handlers,
      tlsMaterial: () => serverTls,
    },
  );
  const { port } = await server.listen();
  t.teardown(() => server.close());
  // A second "DC" under the same root, as a joined secondary would be.
  const ca2 = OpensslCa.secondary(dir, 'dc2');
  await ca2.installIntermediate(
    (await ca.signIntermediateCsr(await ca2.createIntermediateCsr(), 'dc2')).certPem,
    ca.rootsResponse(),
  );
  const clientTls = await ca2.serverTls('s2');
  return { ca, server, port, registry, clientTls };
}

test('requests and server-push streams are multiplexed on one connection, in order', async (t) => {
  const h = emptyHandlers();
  h.requests.set('echo', (p) => p);
  h.requests.set('fail', () => {
    throw new Error('boom');
  });
  h.streams.set('count', async (p, _peer, sink) => {
    for (let i = 0; i < (p as number); i++) await sink.push(i);
  });
  const { port, clientTls } = await pair(t, h);
  const peer = await dialPeer(
    { host: '127.0.0.1', port, dc: 'dc1', node: 's1' },
    { kind: 'mtls', material: clientTls },
    { ...defaultChannelOptions, datacenter: 'dc2', node: 's2', domain: 'consul' },
    {
      logger: silentLogger,
      clock: systemClock,
      metrics: channelMetrics(new Registry()),
      handlers: emptyHandlers(),
    },
  );
  t.teardown(() => peer.close());
  const got: number[] = [];
  const s = peer.subscribe('count', 1000, (n) => void got.push(n as number));
  const echoes = await Promise.all([1, 2, 3].map((n) => peer.request('echo', { n })));
  t.deepEqual(echoes, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  await s.done;
  t.deepEqual(
    got,
    Array.from({ length: 1000 }, (_, i) => i),
  );
  const err = await t.throwsAsync(peer.request('fail', null));
  t.true(isMeshError(err, 'MESH_ERR_INTERNAL'));
  t.is(err!.message, 'boom');
});

test('a frame over the size limit closes that peer and is counted', async (t) => {
  const h = emptyHandlers();
  h.requests.set('echo', (p) => p);
  const { port, clientTls, registry } = await pair(t, h, { maxFrameBytes: 64 * 1024 });
  const opts = { ...defaultChannelOptions, datacenter: 'dc2', node: 's2', domain: 'consul' };
  const deps = {
    logger: silentLogger,
    clock: systemClock,
    metrics: channelMetrics(new Registry()),
    handlers: emptyHandlers(),
  };
  const peer = await dialPeer(
    { host: '127.0.0.1', port, dc: 'dc1' },
    { kind: 'mtls', material: clientTls },
    opts,
    deps,
  );
  const closed = new Promise<string>((r) => peer.onClose(r));
  peer.sendRaw(Buffer.alloc(100 * 1024, 7));
  await closed;
  t.regex(registry.render(), /meshfed_federation_frames_rejected_total\{reason="too_large"\} 1/);
  // A well-behaved peer still gets answers.
  const ok = await dialPeer(
    { host: '127.0.0.1', port, dc: 'dc1' },
    { kind: 'mtls', material: clientTls },
    opts,
    deps,
  );
  t.deepEqual(await ok.request('echo', 'hi'), 'hi');
  ok.close();
});

test('a peer silent past the heartbeat timeout is closed, and pending requests fail with a clear error', async (t) => {
  const h = emptyHandlers();
  h.requests.set('never', () => new Promise(() => undefined));
  const { port, clientTls } = await pair(t, h);
  const clock = new ManualClock();
  const peer = await dialPeer(
    { host: '127.0.0.1', port, dc: 'dc1' },
    { kind: 'mtls', material: clientTls },
    {
      ...defaultChannelOptions,
      datacenter: 'dc2',
      node: 's2',
      domain: 'consul',
      heartbeatMs: 500,
      heartbeatTimeoutMs: 3_000,
      requestTimeoutMs: 60_000,
    },
    { logger: silentLogger, clock, metrics: channelMetrics(new Registry()), handlers: emptyHandlers() },
  );
  const pending = peer.request('never', null);
  const closed = new Promise<string>((r) => peer.onClose(r));
  clock.advance(3_600); // no frame can arrive inside one synchronous advance: the peer looks dead
  t.is(await closed, 'terminated');
  const err = await t.throwsAsync(pending);
  t.true(isMeshError(err, 'MESH_ERR_FED_CHANNEL_CLOSED'));
});

test('a request that gets no answer times out on the clock', async (t) => {
  const h = emptyHandlers();
  h.requests.set('never', () => new Promise(() => undefined));
  const { port, clientTls } = await pair(t, h);
  const clock = new ManualClock();
  const peer = await dialPeer(
    { host: '127.0.0.1', port, dc: 'dc1' },
    { kind: 'mtls', material: clientTls },
    {
      ...defaultChannelOptions,
      datacenter: 'dc2',
      node: 's2',
      domain: 'consul',
      heartbeatMs: 60_000,
      heartbeatTimeoutMs: 120_000,
      requestTimeoutMs: 1_000,
    },
    { logger: silentLogger, clock, metrics: channelMetrics(new Registry()), handlers: emptyHandlers() },
  );
  t.teardown(() => peer.close());
  const pending = peer.request('never', null);
  clock.advance(1_001);
  const err = await t.throwsAsync(pending);
  t.true(isMeshError(err, 'MESH_ERR_FED_TIMEOUT'));
});
