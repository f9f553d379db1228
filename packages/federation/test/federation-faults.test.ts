import test from 'ava';
import { Registry, encodeFrame, isMeshError, silentLogger, systemClock } from '@meshfed/core';
import { ManualClock, tempDir, waitFor } from '@meshfed/testkit';
import {
  ChannelServer,
  StaticMembership,
  channelMetrics,
  defaultChannelOptions,
  dialPeer,
  emptyHandlers,
} from '../src/index.js';
import { converged, intention, makeDc, makeFederation, type Dc } from './fixtures/cluster.js';
import { OpensslCa } from './fixtures/openssl-ca.js';
import { SniGateway } from './fixtures/sni-gateway.js';

// Faults and hostile input: foreign certificates, bad frames and batches, malformed states,
// reaching the primary through an SNI-routing gateway, and reconnect backoff on the clock.

test.serial(
  'a server certificate from another CA is refused in both directions, counted, and the primary keeps serving',
  async (t) => {
    const dir = tempDir(t);
    const { primary, secondaries } = await makeFederation(t, dir, ['dc2']);
    const dc2 = secondaries[0]!;
    const foreign = await OpensslCa.primary(dir, 'dc9', 'aaaaaaaa-0000-0000-0000-000000000000.consul');
    const foreignTls = await foreign.serverTls('evil');
    const addr = primary.fed.status() && (await primary.fed.listen());
    const reg = new Registry();
    const deps = {
      logger: silentLogger,
      clock: systemClock,
      metrics: channelMetrics(reg),
      handlers: emptyHandlers(),
    };
    const opts = { ...defaultChannelOptions, datacenter: 'dc9', node: 'evil', domain: 'consul' };
    // A foreign server dials the primary: its certificate does not chain to dc1's bundle.
    // (It trusts dc1's bundle so the TLS handshake completes and the primary's refusal is observed.)
    const e1 = await t.throwsAsync(
      dialPeer(
        { host: '127.0.0.1', port: addr.port, dc: 'dc1' },
        { kind: 'mtls', material: { ...foreignTls, ca: primary.ca.bundle() } },
        opts,
        deps,
      ),
    );
    t.true(isMeshError(e1, 'MESH_ERR_FED_PEER_REJECTED'), String(e1));
    t.regex(
      primary.registry.render(),
      /meshfed_federation_peers_rejected_total\{reason="untrusted_certificate"\} 1/,
    );
    // dc2 dials a server presenting a foreign certificate: dc2 refuses it at the handshake.
    const e2 = await t.throwsAsync(
      dialPeer(
        { host: '127.0.0.1', port: addr.port, dc: 'dc1' },
        { kind: 'mtls', material: { ...dc2.material()!, ca: foreign.bundle() } },
        { ...opts, datacenter: 'dc2' },
        deps,
      ),
    );
    t.true(isMeshError(e2, 'MESH_ERR_FED_PRIMARY_UNREACHABLE'), String(e2));
    // The real dc2 link is unaffected.
    primary.store.put('intentions', 'after->evil', intention('after', 'evil'));
    await waitFor(() => dc2.store.get('intentions', 'after->evil'), { what: 'replication still flowing' });
    t.pass();
  },
);

test.serial(
  'garbage frames, unknown frame types and unknown methods are refused, logged, counted; only that peer is closed',
  async (t) => {
    const dir = tempDir(t);
    const { primary, secondaries } = await makeFederation(t, dir, ['dc2', 'dc3']);
    const [dc2, dc3] = secondaries as [Dc, Dc];
    const addr = await primary.fed.listen();
    const deps = {
      logger: silentLogger,
      clock: systemClock,
      metrics: channelMetrics(new Registry()),
      handlers: emptyHandlers(),
    };
    const opts = { ...defaultChannelOptions, datacenter: 'dc2', node: 'probe', domain: 'consul' };
    const dial = () =>
      dialPeer(
        { host: '127.0.0.1', port: addr.port, dc: 'dc1' },
        { kind: 'mtls', material: dc2.material()! },
        opts,
        deps,
      );

    const p1 = await dial();
    const closed1 = new Promise<string>((r) => p1.onClose(r));
    p1.sendRaw(Buffer.from([0xc1, 0xff, 0x00, 0x13]));
    t.regex(await closed1, /1008|closed/);
    const p2 = await dial();
    const closed2 = new Promise<string>((r) => p2.onClose(r));
    p2.sendRaw(encodeFrame({ type: 'drop-tables', id: 1, body: null }));
    await closed2;
    const p3 = await dial();
    const unknown = await t.throwsAsync(p3.request('replicate-everything-now', {}));
    t.true(isMeshError(unknown, 'MESH_ERR_FED_UNKNOWN_MESSAGE'));
    const badKind = await t.throwsAsync(p3.request('hash', { tables: ['acl_tokens'] }));
    t.true(isMeshError(badKind, 'MESH_ERR_FED_UNKNOWN_MESSAGE'));
    p3.close();

    const metrics = primary.registry.render();
    t.regex(metrics, /meshfed_federation_frames_rejected_total\{reason="decode"\} 1/);
    t.regex(metrics, /meshfed_federation_frames_rejected_total\{reason="unknown_type"\} 1/);
    t.regex(metrics, /meshfed_federation_frames_rejected_total\{reason="unknown_method"\} 1/);
    t.true(primary.logs.some((l) => l.includes('bad frame') && l.includes('"reason":"decode"')));
    t.false(
      primary.logs.some((l) => /"level":(30|40|50)/.test(l) && l.includes('drop-tables')),
      'raw input not logged above debug',
    );
    // Nothing applied, and the other DCs' links still work.
    primary.store.put('intentions', 'still->ok', intention('still', 'ok'));
    await converged(primary, [dc2, dc3], 'replication after bad peers');
    t.is(primary.store.keys('intentions').length, 1);
  },
);

test.serial(
  'a secondary reaches the primary through a mesh gateway that routes by SNI <node>.server.<dc>.<domain>',
  async (t) => {
    const dir = tempDir(t);
    const membership = new StaticMembership();
    const primary = await makeDc(t, { name: 'dc1', primary: 'dc1', membership, baseDir: dir });
    await primary.start();
    const port = (await primary.fed.listen()).port;
    const gw = new SniGateway(
      new Map([
        ['server.dc1.consul', port],
        ['s-dc1.server.dc1.consul', port],
      ]),
    );
    const gwPort = await gw.listen();
    t.teardown(() => gw.close());
    const dc2 = await makeDc(t, {
      name: 'dc2',
      primary: 'dc1',
      membership,
      baseDir: dir,
      options: { gateways: { dc1: [`127.0.0.1:${gwPort}`] } },
    });
    await dc2.fed.join(primary.fed.createJoinToken({ ttlMs: 60_000 }).token, {
      address: `127.0.0.1:${gwPort}`,
    });
    await dc2.start();
    primary.store.put('intentions', 'via->gateway', intention('via', 'gateway'));
    await waitFor(() => dc2.store.get('intentions', 'via->gateway'), {
      what: 'replication through the gateway',
    });
    t.true(gw.routed.includes('server.dc1.consul'), 'join dialled by the DC-wide server name');
    t.true(gw.routed.includes('s-dc1.server.dc1.consul'), 'the link named the primary node by SNI');
  },
);

test.serial(
  'bad replication batches (foreign table, gap, garbage) from a primary are refused and nothing is applied',
  async (t) => {
    const { primary, secondaries, membership } = await makeFederation(t, tempDir(t), ['dc2']);
    const dc2 = secondaries[0]!;
    primary.store.put('intentions', 'web->db', intention('web', 'db'));
    await converged(primary, [dc2]);
    const hashBefore = dc2.store.contentHash(['intentions', 'config_entries']);
    const cursorBefore = dc2.store.replicationCursor('dc1');
    // The real primary goes away; a misbehaving server with a valid dc1 certificate takes its place.
    const material = primary.material()!;
    await primary.fed.close();
    const bad = [
      (c: number) => ({
        kind: 'changes',
        prev: c,
        index: c + 1,
        committedAt: 0,
        changes: [{ index: c + 1, table: 'acl_tokens', key: 'root', op: 'put', value: {} }],
      }),
      (c: number) => ({
        kind: 'changes',
        prev: c + 5,
        index: c + 9,
        committedAt: 0,
        changes: [{ index: c + 9, table: 'intentions', key: 'gap->x', op: 'put', value: {} }],
      }),
      () => 'not a batch',
      (c: number) => ({ kind: 'merge-everything', prev: c, index: c + 1, committedAt: 0, changes: [] }),
    ];
    let subscriptions = 0;
    const h = emptyHandlers();
    h.requests.set('state.publish', () => null);
    h.streams.set(
      'roots',
      (_p, _peer, sink) => new Promise<void>((r) => sink.signal.addEventListener('abort', () => r())),
    );
    h.streams.set('replicate', async (p, _peer, sink) => {
      const cursor = (p as { cursor: number }).cursor;
      await sink.push(bad[subscriptions++ % bad.length]!(cursor));
      await new Promise<void>((r) => sink.signal.addEventListener('abort', () => r()));
    });
    const rogue = new ChannelServer(
      {
        ...defaultChannelOptions,
        datacenter: 'dc1',
        node: 's-dc1',
        host: '127.0.0.1',
        port: 0,
        allowJoin: false,
      },
      {
        logger: silentLogger,
        clock: systemClock,
        metrics: channelMetrics(new Registry()),
        handlers: h,
        tlsMaterial: () => material,
      },
    );
    const { port } = await rogue.listen();
    t.teardown(() => rogue.close());
    membership.upsert({ name: 's-dc1', dc: 'dc1', fedAddr: `127.0.0.1:${port}`, status: 'alive' });
    await waitFor(() => subscriptions >= 5, {
      what: 'dc2 refused every bad batch and reconnected',
      timeoutMs: 20_000,
    });
    t.is(dc2.store.contentHash(['intentions', 'config_entries']), hashBefore, 'nothing applied');
    t.is(dc2.store.replicationCursor('dc1'), cursorBefore);
    t.is(dc2.store.get('intentions', 'gap->x'), undefined);
    const m = /meshfed_federation_errors_total\{reason="replication_batch"\} (\d+)/.exec(
      dc2.registry.render(),
    );
    t.true(Number(m?.[1]) >= 4);
    t.regex(dc2.fed.status().kinds[0]!.lastError ?? '', /replication batch rejected/);
    t.true(dc2.logs.some((l) => l.includes('federation stream failed; reconnecting the link')));
  },
);

test.serial('a malformed federation state from a peer is refused and does not reach the view', async (t) => {
  const { primary, secondaries } = await makeFederation(t, tempDir(t), ['dc2']);
  const dc2 = secondaries[0]!;
  await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'link' });
  const peer = dc2.fed.peerFor('dc1')!;
  const e1 = await t.throwsAsync(
    peer.request('state.publish', {
      dc: 'dc2',
      updatedAt: Date.now(),
      export: {
        services: [],
        meshGateways: [{ node: 'n', service: 'gw', healthy: true, wanAddress: 'nonsense' }],
      },
    }),
  );
  t.true(isMeshError(e1, 'MESH_ERR_API_BAD_REQUEST'));
  t.regex(e1!.message, /wanAddress/);
  const e2 = await t.throwsAsync(
    peer.request('state.publish', {
      dc: 'dc3',
      updatedAt: Date.now(),
      export: { services: [], meshGateways: [] },
    }),
  );
  t.true(isMeshError(e2, 'MESH_ERR_FED_PEER_REJECTED'), 'a DC may not publish for another');
  t.false(primary.fed.federationStates().some((s) => s.datacenter === 'dc3'));
  t.notThrows(() => primary.fed.meshGatewaysByDc());
});

test.serial('reconnects wait a jittered, growing backoff on the injected clock', async (t) => {
  const dir = tempDir(t);
  const membership = new StaticMembership();
  const primary = await makeDc(t, { name: 'dc1', primary: 'dc1', membership, baseDir: dir });
  await primary.start();
  const clock = new ManualClock(Date.now());
  const dc2 = await makeDc(t, {
    name: 'dc2',
    primary: 'dc1',
    membership,
    baseDir: dir,
    clock,
    options: { reconnectMinMs: 1_000, reconnectMaxMs: 60_000 },
  });
  await dc2.fed.join(primary.fed.createJoinToken({ ttlMs: 60_000 }).token);
  await dc2.start();
  await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'first link (dialled at once)' });
  // Attempt 0 waits [500, 1000) ms; a link that dies young does not reset the attempt count.
  dc2.fed.cutLink('dc1');
  await waitFor(() => !dc2.fed.peerFor('dc1'), { what: 'link down' });
  await new Promise((r) => setTimeout(r, 100)); // a wrong immediate redial would show here
  t.falsy(dc2.fed.peerFor('dc1'));
  clock.advance(499);
  await new Promise((r) => setTimeout(r, 100));
  t.falsy(dc2.fed.peerFor('dc1'), 'not before the lower bound of the jitter');
  clock.advance(501);
  await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'redial after backoff 0' });
  // Attempt 1 waits [1000, 2000) ms.
  dc2.fed.cutLink('dc1');
  await waitFor(() => !dc2.fed.peerFor('dc1'), { what: 'link down again' });
  clock.advance(999);
  await new Promise((r) => setTimeout(r, 100));
  t.falsy(dc2.fed.peerFor('dc1'), 'the second backoff is longer');
  clock.advance(1_001);
  await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'redial after backoff 1' });
});
