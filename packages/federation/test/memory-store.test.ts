import test from 'ava';
import { canonicalJson } from '@meshfed/core';
import { CommitTimes, MemoryReplicationStore, renderFederationStatus } from '../src/index.js';
import { replicationStoreCompliance } from './fixtures/store-compliance.js';

replicationStoreCompliance(test, 'MemoryReplicationStore', () => {
  const store = new MemoryReplicationStore();
  return {
    store,
    write: (rows) =>
      void store.write(
        rows.map((r) =>
          r.value === undefined
            ? { table: r.table, key: r.key, op: 'delete' as const }
            : { table: r.table, key: r.key, op: 'put' as const, value: r.value },
        ),
      ),
  };
});

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

test('canonicalJson sorts keys at every level and drops undefined members', (t) => {
  t.is(canonicalJson({ b: 1, a: [true, null, { d: 1, c: undefined }] }), '{"a":[true,null,{"d":1}],"b":1}');
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
