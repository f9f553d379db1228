import test from 'ava';
import { CommitTimes, MemoryReplicationStore, canonicalJson, renderFederationStatus } from '../src/index.js';

test('changesSince returns changes in index order, never splits a transaction, and says tooOld past history', (t) => {
  const s = new MemoryReplicationStore({ historyLimit: 10 });
  const i1 = s.write([
    { table: 'intentions', key: 'a', op: 'put', value: 1 },
    { table: 'intentions', key: 'b', op: 'put', value: 2 },
  ]);
  s.put('services', 'web', {});
  const i3 = s.put('intentions', 'c', 3);
  const r = s.changesSince(0, ['intentions'], 1);
  t.false('tooOld' in r);
  if ('tooOld' in r) return;
  t.deepEqual(
    r.changes.map((c) => c.key),
    ['a', 'b'],
  );
  t.is(r.index, i1);
  const r2 = s.changesSince(i1, ['intentions']);
  if ('tooOld' in r2) return t.fail();
  t.deepEqual(
    r2.changes.map((c) => [c.key, c.index]),
    [['c', i3]],
  );
  t.is(r2.index, s.currentIndex());
  for (let i = 0; i < 20; i++) s.put('intentions', `k${i}`, i);
  t.deepEqual(s.changesSince(i1, ['intentions']), { tooOld: true });
});

test('applyReplicated is one step: replaceAll, changes, cursor and one index raise; watchers wake', async (t) => {
  const s = new MemoryReplicationStore();
  s.put('intentions', 'local', 1);
  const before = s.currentIndex();
  const woke = s.watchTables(['intentions'], before, new AbortController().signal);
  s.applyReplicated('dc1', 42, [{ index: 40, table: 'intentions', key: 'x', op: 'put', value: { A: 1 } }], {
    replaceAll: ['intentions'],
  });
  t.is(await woke, before + 1);
  t.is(s.currentIndex(), before + 1);
  t.is(s.replicationCursor('dc1'), 42);
  t.is(s.replicationCursor('dc9'), 0);
  t.deepEqual(s.keys('intentions'), ['x']);
  t.throws(() =>
    s.applyReplicated('dc1', 43, [{ index: 1, table: 'intentions', key: 'y', op: 'bogus' as 'put' }]),
  );
  t.is(s.replicationCursor('dc1'), 42, 'a bad batch changes nothing');
  t.deepEqual(s.keys('intentions'), ['x']);
});

test('contentHash is independent of write order and key order inside values', (t) => {
  const a = new MemoryReplicationStore();
  const b = new MemoryReplicationStore();
  a.put('intentions', 'x', { A: 1, B: [1, { c: 2, d: 3 }] });
  a.put('config_entries', 'y', 2);
  b.put('config_entries', 'y', 2);
  b.put('intentions', 'x', { B: [1, { d: 3, c: 2 }], A: 1 });
  t.is(a.contentHash(['intentions', 'config_entries']), b.contentHash(['config_entries', 'intentions']));
  b.put('intentions', 'x', { A: 2 });
  t.not(a.contentHash(['intentions']), b.contentHash(['intentions']));
  t.is(canonicalJson({ b: 1, a: [true, null] }), '{"a":[true,null],"b":1}');
});

test('renderFederationStatus prints one aligned row per DC with NO where hashes differ', (t) => {
  const out = renderFederationStatus({
    datacenter: 'dc2',
    primaryDatacenter: 'dc1',
    role: 'secondary',
    kinds: [],
    datacenters: [
      {
        datacenter: 'dc1',
        role: 'primary',
        local: false,
        reachable: true,
        gossip: 'alive',
        replicationIndex: undefined,
        lagMs: undefined,
        hashesEqual: undefined,
        lastError: undefined,
        stale: false,
        downForMs: undefined,
      },
      {
        datacenter: 'dc2',
        role: 'secondary',
        local: true,
        reachable: true,
        gossip: 'alive',
        replicationIndex: 42,
        lagMs: 3.2,
        hashesEqual: false,
        lastError: 'gap',
        stale: false,
        downForMs: undefined,
      },
    ],
  });
  const lines = out.trimEnd().split('\n');
  t.is(lines.length, 3);
  t.regex(lines[2]!, /^dc2 \(this\)\s+secondary\s+yes\s+alive\s+42\s+3\s+NO\s+-\s+gap$/);
});

test('CommitTimes answers the first commit at or after an index, and unknown before it started or after forgetting', (t) => {
  const c = new CommitTimes(4);
  c.startAt(10);
  c.record(12, 1000);
  c.record(15, 2000);
  t.is(c.timeOf(10), undefined);
  t.is(c.timeOf(11), 1000);
  t.is(c.timeOf(12), 1000);
  t.is(c.timeOf(13), 2000);
  t.is(c.timeOf(16), undefined);
  c.record(16, 3000);
  c.record(17, 4000);
  c.record(18, 5000); // over capacity: the oldest half is forgotten
  t.is(c.timeOf(12), undefined);
  t.is(c.timeOf(18), 5000);
});
