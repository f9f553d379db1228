import test from 'ava';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isMeshError, systemClock } from '@meshfed/core';
import { tempDir, waitFor } from '@meshfed/testkit';
import {
  MemoryReplicationStore,
  StaticMembership,
  certFingerprint,
  decodeJoinToken,
  describeJoinToken,
  encodeJoinToken,
} from '../src/index.js';
import { converged, intention, makeDc, makeFederation, type Dc } from './fixtures/cluster.js';

// A primary and secondaries in one process over real WebSocket/mTLS on 127.0.0.1, certificates
// made by openssl: join, replication, resume, forwarding, CA, catalog export. Serial: each test
// runs three DCs, and running them all at once on a shared 2-core machine starves them.

const run = promisify(execFile);

test.serial(
  'secondaries joined by token replicate intentions and config entries; hashes match; status and metrics say so',
  async (t) => {
    const dir = tempDir(t);
    const { primary, secondaries } = await makeFederation(t, dir);
    const [dc2, dc3] = secondaries as [Dc, Dc];

    primary.store.put('intentions', 'web->db', intention('web', 'db'));
    primary.store.put('config_entries', 'service-resolver/db', { Kind: 'service-resolver', Name: 'db' });
    primary.store.put('intentions', 'api->db', intention('api', 'db', 'deny'));
    primary.store.delete('intentions', 'api->db');
    await converged(primary, secondaries);
    t.deepEqual(dc2.store.get('intentions', 'web->db'), intention('web', 'db'));
    t.deepEqual(dc3.store.keys('intentions'), ['web->db']);
    t.deepEqual(dc3.store.get('config_entries', 'service-resolver/db'), {
      Kind: 'service-resolver',
      Name: 'db',
    });
    t.is(dc2.store.replicationCursor('dc1'), primary.store.currentIndex());

    const hashes = await dc2.fed.checkHashes();
    t.deepEqual(hashes, { intentions: true, config_entries: true });
    const st = dc2.fed.status();
    t.is(st.role, 'secondary');
    const kind = st.kinds.find((k) => k.kind === 'intentions')!;
    t.is(kind.lastAppliedIndex, primary.store.currentIndex());
    t.is(kind.lastError, undefined);
    t.true(kind.lagMs !== undefined && kind.lagMs >= 0);
    const row1 = st.datacenters.find((d) => d.datacenter === 'dc1')!;
    t.true(row1.reachable);
    t.is(row1.role, 'primary');
    const rendered = dc2.registry.render();
    t.regex(rendered, /meshfed_federation_replication_applied_changes_total\{kind="intentions"\} [1-9]/);
    t.regex(rendered, /meshfed_federation_replication_lag_seconds\{kind="intentions"\}/);

    // The primary sees both secondaries' self-reported replication through the published states.
    await waitFor(
      () => {
        const rows = primary.fed.status().datacenters;
        return ['dc2', 'dc3'].every(
          (d) => rows.find((r) => r.datacenter === d)?.replicationIndex === primary.store.currentIndex(),
        );
      },
      { what: 'primary status shows secondaries caught up' },
    );
    // Both secondaries got intermediates signed by the primary over the channel, and their server
    // certificates chain to the primary's root (openssl is the judge).
    t.is(primary.ca.signedIntermediates, 2);
    const bundle = join(dir, 'bundle.pem');
    writeFileSync(bundle, primary.ca.bundle().join(''));
    const m = dc3.material()!;
    const [leaf, ...rest] = m.cert.split(/(?<=-----END CERTIFICATE-----\n?)/).filter((s) => s.trim());
    writeFileSync(join(dir, 'leaf.pem'), leaf!);
    writeFileSync(join(dir, 'chain.pem'), rest.join(''));
    const v = await run('openssl', [
      'verify',
      '-CAfile',
      bundle,
      '-untrusted',
      join(dir, 'chain.pem'),
      join(dir, 'leaf.pem'),
    ]);
    t.regex(v.stdout, /OK/);
  },
);

test.serial(
  'a write sent to a secondary is forwarded to the primary, lands there and comes back by replication',
  async (t) => {
    const { primary, secondaries } = await makeFederation(t, tempDir(t), ['dc2']);
    const dc2 = secondaries[0]!;
    await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'link to primary' });
    const res = await dc2.fed.forwardWrite({
      method: 'PUT',
      path: '/v1/connect/intentions/exact',
      query: { source: 'web', destination: 'db' },
      body: intention('web', 'db'),
      token: 'writer',
    });
    t.is(res.status, 200);
    t.is(res.headers['x-consul-index'], String(primary.store.currentIndex()));
    t.deepEqual(primary.store.get('intentions', 'web->db'), intention('web', 'db'));
    await waitFor(() => dc2.store.get('intentions', 'web->db'), { what: 'forwarded write replicated back' });
    // The primary's refusal comes back as the primary's answer; nothing is written anywhere.
    const denied = await dc2.fed.forwardWrite({
      method: 'PUT',
      path: '/v1/connect/intentions/exact',
      query: { source: 'a', destination: 'b' },
      body: intention('a', 'b'),
      token: 'reader',
    });
    t.is(denied.status, 403);
    t.is(primary.store.get('intentions', 'a->b'), undefined);
    // The primary unreachable: a clear error, not a local write.
    await primary.fed.close();
    await waitFor(() => !dc2.fed.peerFor('dc1'), { what: 'link down' });
    const err = await t.throwsAsync(
      dc2.fed.forwardWrite({
        method: 'PUT',
        path: '/v1/connect/intentions/exact',
        query: { source: 'x', destination: 'y' },
      }),
    );
    t.true(isMeshError(err, 'MESH_ERR_FED_PRIMARY_UNREACHABLE'));
    t.is(dc2.store.get('intentions', 'x->y'), undefined);
  },
);

test.serial(
  'the channel cut mid-stream while writes continue: the secondary resumes from its cursor, nothing lost or applied twice',
  async (t) => {
    const { primary, secondaries } = await makeFederation(t, tempDir(t), ['dc2']);
    const dc2 = secondaries[0]!;
    primary.store.put('config_entries', 'proxy-defaults/global', { Kind: 'proxy-defaults', Name: 'global' });
    await waitFor(() => dc2.store.replicationCursor('dc1') === primary.store.currentIndex(), {
      what: 'initial sync',
    });
    const applied = new Map<string, number>();
    let snapshots = 0;
    const orig = dc2.store.applyReplicated.bind(dc2.store);
    dc2.store.applyReplicated = (source, upTo, changes, opts) => {
      if (opts?.replaceAll) snapshots++;
      for (const c of changes) if (c.op === 'put') applied.set(c.key, (applied.get(c.key) ?? 0) + 1);
      orig(source, upTo, changes, opts);
    };
    const N = 600;
    let cuts = 0;
    for (let i = 0; i < N; i++) {
      primary.store.put('intentions', `svc${i}->db`, intention(`svc${i}`, 'db'));
      if (i % 10 === 9) await new Promise<void>((r) => setImmediate(r));
      if (i === 150 || i === 400) {
        dc2.fed.cutLink('dc1');
        cuts++;
      }
    }
    await converged(primary, [dc2], 'catch-up after cuts');
    t.is(cuts, 2);
    t.is(snapshots, 0, 'resumed from the cursor, no full resync');
    t.is(applied.size, N, 'every write arrived');
    t.true(
      [...applied.values()].every((n) => n === 1),
      'no write applied twice',
    );
    t.deepEqual(await dc2.fed.checkHashes(), { intentions: true, config_entries: true });
    t.true(dc2.logs.some((l) => l.includes('federation link down')));
  },
);

test.serial(
  "replication lag stays right when the secondary's clock is 30 s ahead (offset measured on the channel's heartbeats)",
  async (t) => {
    const dir = tempDir(t);
    const membership = new StaticMembership();
    const primary = await makeDc(t, { name: 'dc1', primary: 'dc1', membership, baseDir: dir });
    await primary.start();
    const ahead = { ...systemClock, now: () => Date.now() + 30_000 };
    const dc2 = await makeDc(t, { name: 'dc2', primary: 'dc1', membership, baseDir: dir, clock: ahead });
    await dc2.fed.join(primary.fed.createJoinToken({ ttlMs: 60_000 }).token);
    await dc2.start();
    primary.store.put('intentions', 'web->db', intention('web', 'db'));
    await converged(primary, [dc2]);
    const lag = dc2.fed.status().kinds.find((k) => k.kind === 'intentions')!.lagMs!;
    t.true(lag < 5_000, `lag ${lag} ms; without the offset it would read about 30,000 ms`);
  },
);

test.serial(
  'join tokens: single use, expiry, fingerprint pinning, garbage, and local data are refused with clear errors',
  async (t) => {
    const dir = tempDir(t);
    const membership = new StaticMembership();
    let skew = 0;
    const clock = { ...systemClock, now: () => Date.now() + skew };
    const primary = await makeDc(t, { name: 'dc1', primary: 'dc1', membership, baseDir: dir, clock });
    await primary.start();

    // Used token.
    const dc2 = await makeDc(t, { name: 'dc2', primary: 'dc1', membership, baseDir: dir });
    const { token } = primary.fed.createJoinToken({ ttlMs: 60_000 });
    t.false(JSON.stringify(primary.tokens.list()).includes(decodeJoinToken(token).s), 'secret not stored');
    const shown = describeJoinToken(token);
    t.is(shown.primaryDatacenter, 'dc1');
    t.is(shown.fingerprint, certFingerprint(primary.ca.rootsResponse().Roots[0]!.RootCert));
    t.false(JSON.stringify(shown).includes(decodeJoinToken(token).s), 'describe never shows the secret');
    t.false(
      primary.logs.some((l) => l.includes(decodeJoinToken(token).s)),
      'the secret is never logged',
    );
    await dc2.fed.join(token);
    const dc3 = await makeDc(t, { name: 'dc3', primary: 'dc1', membership, baseDir: dir });
    const used = await t.throwsAsync(dc3.fed.join(token));
    t.true(isMeshError(used, 'MESH_ERR_FED_TOKEN_USED'), String(used));
    t.regex(used!.message, /already used by dc2/);

    // Expired token.
    const { token: short } = primary.fed.createJoinToken({ ttlMs: 1_000 });
    skew = 5_000;
    const expired = await t.throwsAsync(dc3.fed.join(short));
    t.true(isMeshError(expired, 'MESH_ERR_FED_TOKEN_EXPIRED'), String(expired));
    skew = 0;

    // Wrong fingerprint: the secret is never sent (the token stays unused and still works after).
    const { token: good } = primary.fed.createJoinToken({ ttlMs: 60_000 });
    const wrong = encodeJoinToken({ ...decodeJoinToken(good), fp: 'ab'.repeat(32) });
    const pin = await t.throwsAsync(dc3.fed.join(wrong));
    t.true(isMeshError(pin, 'MESH_ERR_FED_PIN_MISMATCH'), String(pin));
    t.is(primary.tokens.get(decodeJoinToken(good).id)!.usedAt, undefined);

    // Revoked token: refused with its own code; a used or unknown token cannot be revoked; the list
    // shows every state and never a secret or its hash.
    const { token: revokable, id: revokedId } = primary.fed.createJoinToken({ ttlMs: 60_000 });
    t.is(primary.fed.revokeJoinToken(revokedId).state, 'revoked');
    const revoked = await t.throwsAsync(dc3.fed.join(revokable));
    t.true(isMeshError(revoked, 'MESH_ERR_FED_TOKEN_REVOKED'), String(revoked));
    t.true(
      isMeshError(
        t.throws(() => primary.fed.revokeJoinToken(revokedId)),
        'MESH_ERR_API_CONFLICT',
      ),
    );
    t.true(
      isMeshError(
        t.throws(() => primary.fed.revokeJoinToken(decodeJoinToken(token).id)),
        'MESH_ERR_API_CONFLICT',
      ),
      'a used token cannot be revoked',
    );
    t.true(
      isMeshError(
        t.throws(() => primary.fed.revokeJoinToken('nope')),
        'MESH_ERR_API_NOT_FOUND',
      ),
    );
    skew = 5_000; // the 1-s token is past its expiry, the others are not
    const listed = primary.fed.listJoinTokens();
    skew = 0;
    t.deepEqual(Object.fromEntries(listed.map((i) => [i.id, i.state])), {
      [decodeJoinToken(token).id]: 'used',
      [decodeJoinToken(short).id]: 'expired',
      [decodeJoinToken(good).id]: 'valid',
      [revokedId]: 'revoked',
    });
    t.is(listed.find((i) => i.state === 'used')!.usedBy, 'dc2');
    t.false(JSON.stringify(listed).includes(primary.tokens.get(revokedId)!.secretHash), 'no hash listed');
    t.true(
      isMeshError(
        t.throws(() => dc2.fed.listJoinTokens()),
        'MESH_ERR_FED_NOT_PRIMARY',
      ),
    );

    // Garbage token.
    const garbage = await t.throwsAsync(dc3.fed.join('not-a-token'));
    t.true(isMeshError(garbage, 'MESH_ERR_FED_TOKEN_INVALID'));

    // Local intentions would be lost: refused, listing them; with force it proceeds and replaces them.
    dc3.store.put('intentions', 'local->only', intention('local', 'only'));
    const conflict = await t.throwsAsync(dc3.fed.join(good));
    t.true(isMeshError(conflict, 'MESH_ERR_FED_JOIN_CONFLICT'));
    t.regex(conflict!.message, /intentions\/local->only/);
    t.is(primary.tokens.get(decodeJoinToken(good).id)!.usedAt, undefined, 'refused before using the token');
    primary.store.put('intentions', 'web->db', intention('web', 'db'));
    const r = await dc3.fed.join(good, { force: true });
    t.deepEqual(r.discarded, ['intentions/local->only']);
    await dc3.start();
    await waitFor(() => dc3.store.get('intentions', 'web->db'), { what: 'dc3 replicated after forced join' });
    t.is(dc3.store.get('intentions', 'local->only'), undefined);
  },
);

test.serial(
  'catalog export flows between secondaries while the primary is down; stale and withdrawn DCs are marked',
  async (t) => {
    const { primary, secondaries, membership } = await makeFederation(t, tempDir(t));
    const [dc2, dc3] = secondaries as [Dc, Dc];
    await waitFor(() => dc3.fed.federationStates().some((s) => s.datacenter === 'dc2'), {
      what: 'dc3 sees dc2',
    });
    await waitFor(() => primary.fed.federationStates().length === 3, { what: 'primary sees all' });
    await primary.fed.close();
    await waitFor(
      () => dc3.fed.status().datacenters.find((d) => d.datacenter === 'dc1')?.downForMs !== undefined,
      {
        what: 'dc3 says for how long the primary has been unreachable',
      },
    );
    membership.setStatus('dc1', 'failed');
    dc2.export = {
      services: [...dc2.export.services, { name: 'payments', healthy: 2, total: 3, protocol: 'grpc' }],
      meshGateways: dc2.export.meshGateways,
    };
    dc2.fed.notifyLocalChange();
    await waitFor(
      () =>
        dc3.fed
          .federationStates()
          .find((s) => s.datacenter === 'dc2')
          ?.services.some((s) => s.name === 'payments'),
      { what: 'dc3 sees the new dc2 service with the primary down' },
    );
    const st = dc3.fed.federationStates().find((s) => s.datacenter === 'dc2')!;
    t.false(st.stale);
    t.deepEqual(
      st.services.find((s) => s.name === 'payments'),
      { name: 'payments', healthy: 2, total: 3, protocol: 'grpc' },
    );
    // The failed primary's state is withdrawn from the view; status says it is unreachable.
    t.false(dc3.fed.federationStates().some((s) => s.datacenter === 'dc1'));
    const row = dc3.fed.status().datacenters.find((d) => d.datacenter === 'dc1')!;
    t.false(row.reachable);
    t.is(row.gossip, 'failed');
    const gws = dc3.fed.meshGatewaysByDc() as Record<
      string,
      { Service: { Port: number }; Checks: { Status: string }[] }[]
    >;
    t.deepEqual(Object.keys(gws).sort(), ['dc2', 'dc3']);
    t.is(gws['dc2']![0]!.Checks[0]!.Status, 'passing');
    // dc2 goes silent (its link dies and stays dead): dc3 marks its state stale.
    await dc2.fed.close();
    await waitFor(() => dc3.fed.federationStates().find((s) => s.datacenter === 'dc2')?.stale, {
      what: 'dc2 stale in dc3',
    });
    t.pass();
  },
);

test.serial(
  'a root rotation in the primary reaches the secondary, which gets a new intermediate under the new root',
  async (t) => {
    const dir = tempDir(t);
    const { primary, secondaries } = await makeFederation(t, dir, ['dc2']);
    const dc2 = secondaries[0]!;
    await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'link' });
    const before = dc2.ca.intermediate!.cert;
    await primary.ca.rotateRoot();
    await waitFor(() => dc2.ca.intermediate!.cert !== before && !dc2.ca.needsIntermediate(), {
      what: 'new intermediate',
    });
    const roots = dc2.ca.rootsResponse();
    t.is(roots.Roots.length, 2, 'bundle carries old and new roots');
    t.is(roots.ActiveRootID, primary.ca.rootsResponse().ActiveRootID);
    t.is(primary.ca.signedIntermediates, 2);
    // Links keep working with the new certificates.
    primary.store.put('intentions', 'post->rotation', intention('post', 'rotation'));
    await waitFor(() => dc2.store.get('intentions', 'post->rotation'), {
      what: 'replication after rotation',
    });
    t.pass();
  },
);

test.serial(
  'a secondary whose cursor fell out of the primary history gets a full resync, and ends equal',
  async (t) => {
    const dir = tempDir(t);
    const membership = new StaticMembership();
    // A primary that keeps only 50 changes of history.
    const store = new MemoryReplicationStore({ historyLimit: 50 });
    const primary2 = await makeDc(t, {
      name: 'dc1',
      primary: 'dc1',
      membership,
      baseDir: dir,
      store,
      options: { snapshotChunkRows: 64 },
    });
    await primary2.start();
    const dc2 = await makeDc(t, { name: 'dc2', primary: 'dc1', membership, baseDir: dir });
    await dc2.fed.join(primary2.fed.createJoinToken({ ttlMs: 60_000 }).token);
    await dc2.start();
    primary2.store.put('intentions', 'a->b', intention('a', 'b'));
    await waitFor(() => dc2.store.get('intentions', 'a->b'), { what: 'first sync' });
    let snapshots = 0;
    const orig = dc2.store.applyReplicated.bind(dc2.store);
    dc2.store.applyReplicated = (s, i, c, o) => {
      if (o?.replaceAll) snapshots++;
      orig(s, i, c, o);
    };
    // Stop dc2's federation, write far more than the history holds, delete a->b, then restart dc2.
    await dc2.fed.close();
    for (let i = 0; i < 200; i++) primary2.store.put('intentions', `k${i}->db`, intention(`k${i}`, 'db'));
    primary2.store.delete('intentions', 'a->b');
    const dc2b = await makeDc(t, {
      name: 'dc2',
      primary: 'dc1',
      membership,
      baseDir: dir,
      ca: dc2.ca,
      store: dc2.store,
    });
    await dc2b.start();
    await converged(primary2, [dc2b], 'resync');
    t.is(snapshots, 1);
    t.is(
      dc2b.store.get('intentions', 'a->b'),
      undefined,
      'a delete missed during the outage is not resurrected',
    );
    t.is(dc2b.store.keys('intentions').length, 200);
  },
);

test.serial(
  'an intermediate past half life is renewed over the channel; a secondary whose content drifted reports it',
  async (t) => {
    const { primary, secondaries } = await makeFederation(t, tempDir(t), ['dc2']);
    const dc2 = secondaries[0]!;
    await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'link' });
    t.is(primary.ca.signedIntermediates, 1);
    dc2.ca.pastHalfLife = true;
    // Two callers at once (an operator and the periodic check): one renewal, both see it finish.
    await Promise.all([dc2.fed.renewIntermediate(), dc2.fed.renewIntermediate()]);
    t.is(primary.ca.signedIntermediates, 2);
    t.false(dc2.ca.needsIntermediate());

    primary.store.put('intentions', 'web->db', intention('web', 'db'));
    await converged(primary, [dc2]);
    t.deepEqual(await dc2.fed.checkHashes(), { intentions: true, config_entries: true });
    // Someone wrote into the secondary's replicated table behind replication's back.
    dc2.store.put('intentions', 'rogue->db', intention('rogue', 'db'));
    const h = await dc2.fed.checkHashes();
    t.false(h['intentions']);
    t.true(h['config_entries']);
    const row = dc2.fed.status().datacenters.find((d) => d.datacenter === 'dc2')!;
    t.false(row.hashesEqual);
    t.regex(row.lastError ?? '', /content hash differs/);
    t.regex(dc2.registry.render(), /meshfed_federation_errors_total\{reason="hash_mismatch"\} 1/);
  },
);

test.serial('the periodic check renews an intermediate that is due without being asked', async (t) => {
  const dir = tempDir(t);
  const membership = new StaticMembership();
  const primary = await makeDc(t, { name: 'dc1', primary: 'dc1', membership, baseDir: dir });
  await primary.start();
  const dc2 = await makeDc(t, {
    name: 'dc2',
    primary: 'dc1',
    membership,
    baseDir: dir,
    options: { intermediateCheckMs: 100 },
  });
  await dc2.fed.join(primary.fed.createJoinToken({ ttlMs: 60_000 }).token);
  await dc2.start();
  await waitFor(() => dc2.fed.peerFor('dc1'), { what: 'link' });
  const before = dc2.ca.intermediate!.cert;
  dc2.ca.pastHalfLife = true;
  await waitFor(() => dc2.ca.intermediate!.cert !== before, { what: 'renewed intermediate' });
  t.is(primary.ca.signedIntermediates, 2);
});
