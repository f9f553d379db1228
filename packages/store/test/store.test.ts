import test from 'ava';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { silentLogger } from '@meshfed/core';
import { ManualClock, tempDir } from '@meshfed/testkit';
import { SqliteStore, storeCompliance, storeGroupCommitCompliance } from '../src/index.js';

storeCompliance(
  test,
  'sqlite file',
  (t) => new SqliteStore({ path: join(tempDir(t), 'state.db') }, { logger: silentLogger }),
);
storeGroupCommitCompliance(
  test,
  'sqlite file',
  (t) => new SqliteStore({ path: join(tempDir(t), 'state.db') }, { logger: silentLogger }),
);
storeCompliance(test, 'sqlite memory', () => new SqliteStore({ path: ':memory:' }, { logger: silentLogger }));

test('the database file is created owner-only and data survives reopening', (t) => {
  const path = join(tempDir(t), 'sub', 'state.db');
  const a = new SqliteStore({ path }, { logger: silentLogger });
  const i = a.write([{ table: 'nodes', key: 'n1', op: 'put', value: { Address: '10.0.0.1' } }]);
  a.close();
  t.is(statSync(path).mode & 0o777, 0o600);
  const b = new SqliteStore({ path }, { logger: silentLogger });
  t.teardown(() => b.close());
  t.is(b.currentIndex(), i);
  t.deepEqual(b.get('nodes', 'n1')?.value, { Address: '10.0.0.1' });
  t.is(b.indexOf([{ table: 'nodes', key: 'n1' }]), i);
});

test('the reaper drops old changes; changesSince below the floor says tooOld', (t) => {
  const clock = new ManualClock();
  const s = new SqliteStore(
    { path: ':memory:', changelogMaxAgeMs: 1000, changelogMaxEntries: 3, reapIntervalMs: 500 },
    { logger: silentLogger, clock },
  );
  t.teardown(() => s.close());
  for (let i = 0; i < 5; i++) s.write([{ table: 'intentions', key: `i${i}`, op: 'put', value: i }]);
  t.true(s.reap() >= 2);
  t.deepEqual(s.changesSince(0, ['intentions']), { tooOld: true });
  const recent = s.changesSince(s.currentIndex() - 1, ['intentions']);
  t.false('tooOld' in recent);
  clock.advance(2000);
  s.write([{ table: 'intentions', key: 'late', op: 'put', value: 1 }]);
  s.reap();
  const r = s.changesSince(s.currentIndex() - 1, ['intentions']);
  if ('tooOld' in r) return t.fail();
  t.deepEqual(
    r.changes.map((c) => c.key),
    ['late'],
  );
  // Rows themselves are untouched by reaping.
  t.is(s.list('intentions').length, 6);
});
