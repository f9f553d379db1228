// The Store compliance suite: one set of behaviours every Store implementation must show (the
// SQLite store now, a distributed one later). Call it from a test file with a factory.

import type { TestFn } from 'ava';
import { isMeshError } from '@meshfed/core';
import type { Store } from './types.js';

export function storeCompliance(
  test: TestFn,
  name: string,
  make: (t: { teardown(fn: () => void): void }) => Store,
): void {
  const open = (t: { teardown(fn: () => void): void }): Store => {
    const s = make(t);
    t.teardown(() => s.close());
    return s;
  };

  test(`${name}: each write transaction raises the index by one and stamps Create/ModifyIndex`, (t) => {
    const s = open(t);
    const start = s.currentIndex();
    const i1 = s.write([{ table: 'services', key: 'n1/web', op: 'put', value: { a: 1 }, secondary: 'web' }]);
    t.is(i1, start + 1);
    const i2 = s.write([
      { table: 'services', key: 'n1/web', op: 'put', value: { a: 2 }, secondary: 'web' },
      { table: 'services', key: 'n1/db', op: 'put', value: { a: 3 }, secondary: 'db' },
    ]);
    t.is(i2, i1 + 1);
    const row = s.get('services', 'n1/web');
    t.deepEqual(row?.value, { a: 2 });
    t.is(row?.createIndex, i1);
    t.is(row?.modifyIndex, i2);
    t.deepEqual(
      s.list('services', { secondary: 'db' }).map((r) => r.key),
      ['n1/db'],
    );
    t.deepEqual(
      s.list('services', { prefix: 'n1/' }).map((r) => r.key),
      ['n1/db', 'n1/web'],
    );
  });

  test(`${name}: an identical write does not move the index`, (t) => {
    const s = open(t);
    const i1 = s.write([{ table: 'x', key: 'k', op: 'put', value: { v: 1 } }]);
    t.is(s.write([{ table: 'x', key: 'k', op: 'put', value: { v: 1 } }]), i1);
    t.is(s.write([{ table: 'x', key: 'missing', op: 'delete' }]), i1);
  });

  test(`${name}: check-and-set fails the whole transaction and changes nothing`, (t) => {
    const s = open(t);
    const i1 = s.write([{ table: 'x', key: 'k', op: 'put', value: 1, cas: 0 }]);
    const err = t.throws(() =>
      s.write([
        { table: 'x', key: 'other', op: 'put', value: 2 },
        { table: 'x', key: 'k', op: 'put', value: 3, cas: i1 + 5 },
      ]),
    );
    t.true(isMeshError(err, 'MESH_ERR_STORE_CAS_FAILED'));
    t.is(s.get('x', 'other'), undefined);
    t.is(s.currentIndex(), i1);
    t.is(s.write([{ table: 'x', key: 'k', op: 'put', value: 3, cas: i1 }]), i1 + 1);
    t.throws(() => s.write([{ table: 'x', key: 'k', op: 'put', value: 4, cas: 0 }]));
  });

  test(`${name}: watchers wake only for the keys they watch`, async (t) => {
    const s = open(t);
    const i0 = s.write([{ table: 'services', key: 'n1/web', op: 'put', value: 1, secondary: 'web' }]);
    const ac = new AbortController();
    t.teardown(() => ac.abort());
    let dbWoke = false;
    void s
      .waitFor(
        [{ table: 'services', secondary: 'db' }],
        s.indexOf([{ table: 'services', secondary: 'db' }]),
        ac.signal,
      )
      .then(
        () => (dbWoke = true),
        () => undefined,
      );
    const web = s.waitFor([{ table: 'services', secondary: 'web' }], i0, ac.signal);
    const i1 = s.write([{ table: 'services', key: 'n2/web', op: 'put', value: 2, secondary: 'web' }]);
    t.is(await web, i1);
    await new Promise((r) => setImmediate(r));
    t.false(dbWoke);
    t.is(s.indexOf([{ table: 'services', secondary: 'web' }]), i1);
    t.true(s.indexOf([{ table: 'services', secondary: 'db' }]) >= 1);
    // A delete wakes the row's watchers too (the tombstone carries the old secondary).
    const del = s.waitFor([{ table: 'services', secondary: 'web' }], i1, ac.signal);
    const i2 = s.write([{ table: 'services', key: 'n1/web', op: 'delete' }]);
    t.is(await del, i2);
  });

  test(`${name}: an aborted wait rejects and leaves no waiter behind`, async (t) => {
    const s = open(t);
    const ac = new AbortController();
    const p = s.watchTables(['intentions'], s.indexOf([{ table: 'intentions' }]), ac.signal);
    ac.abort(new Error('gone'));
    await t.throwsAsync(p, { message: 'gone' });
  });

  test(`${name}: changesSince, snapshot, applyReplicated and contentHash agree`, (t) => {
    const a = open(t);
    const b = open(t);
    a.write([{ table: 'intentions', key: 'i1', op: 'put', value: { S: 'web', D: 'db' } }]);
    a.write([
      { table: 'config_entries', key: 'service-defaults/web', op: 'put', value: { Protocol: 'http' } },
    ]);
    a.write([{ table: 'services', key: 'n/web', op: 'put', value: {} }]);
    const tables = ['intentions', 'config_entries'];
    const snap = a.snapshot(tables);
    t.is(snap.rows.length, 2);
    b.applyReplicated('dc1', snap.index, snap.rows, { replaceAll: tables });
    t.is(b.contentHash(tables), a.contentHash(tables));
    t.is(b.replicationCursor('dc1'), snap.index);
    t.is(b.replicationCursor('dc9'), 0);

    const from = a.currentIndex();
    a.write([{ table: 'intentions', key: 'i1', op: 'delete' }]);
    a.write([{ table: 'intentions', key: 'i2', op: 'put', value: { S: '*', D: 'db' } }]);
    const delta = a.changesSince(from, tables);
    if ('tooOld' in delta) return t.fail('changelog should still hold these');
    t.deepEqual(
      delta.changes.map((c) => [c.op, c.key]),
      [
        ['delete', 'i1'],
        ['put', 'i2'],
      ],
    );
    const before = b.currentIndex();
    b.applyReplicated('dc1', delta.index, delta.changes);
    t.is(b.currentIndex(), before + 1);
    t.is(b.contentHash(tables), a.contentHash(tables));
    t.not(a.contentHash(tables), a.contentHash(['services']));
  });

  test(`${name}: blobs round-trip`, (t) => {
    const s = open(t);
    t.is(s.getBlob('ca'), undefined);
    s.putBlob('ca', { roots: [1, 2] });
    t.deepEqual(s.getBlob('ca'), { roots: [1, 2] });
  });
}

export function storeGroupCommitCompliance(
  test: TestFn,
  name: string,
  make: (t: { teardown(fn: () => void): void }) => Store,
): void {
  test(`${name}: writeAsync groups concurrent writes, each with its own index; a CAS failure fails only its own`, async (t) => {
    const s = make(t);
    t.teardown(() => s.close());
    const start = s.currentIndex();
    const results = await Promise.allSettled([
      s.writeAsync([{ table: 'x', key: 'a', op: 'put', value: 1 }]),
      s.writeAsync([{ table: 'x', key: 'b', op: 'put', value: 2, cas: 99 }]),
      s.writeAsync([{ table: 'x', key: 'c', op: 'put', value: 3 }]),
      s.writeAsync([{ table: 'x', key: 'a', op: 'put', value: 1 }]),
    ]);
    t.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
    );
    const idx = results.map((r) => (r.status === 'fulfilled' ? r.value : -1));
    t.deepEqual(idx, [start + 1, -1, start + 2, start + 2]);
    t.true(isMeshError((results[1] as PromiseRejectedResult).reason, 'MESH_ERR_STORE_CAS_FAILED'));
    t.is(s.get('x', 'b'), undefined);
    t.is(s.get('x', 'c')?.modifyIndex, start + 2);
    t.is(s.currentIndex(), start + 2);
  });
}
