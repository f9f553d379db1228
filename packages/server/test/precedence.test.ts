// Consul's 9-level intention precedence table, row by row, through the server's API: for each row an
// allow at that level competes with a deny one level below (and vice versa); the more precise wins.
// Then the tie: at equal precedence deny beats allow.

import test from 'ava';
import { startServer, call } from './helpers.js';

// [precedence, source, destination] written as ns/name; the pair checked is default/web -> default/db.
const rows: [number, string, string][] = [
  [9, 'default/web', 'default/db'],
  [8, 'default/*', 'default/db'],
  [7, '*/*', 'default/db'],
  [6, 'default/web', 'default/*'],
  [5, 'default/*', 'default/*'],
  [4, '*/*', 'default/*'],
  [3, 'default/web', '*/*'],
  [2, 'default/*', '*/*'],
  [1, '*/*', '*/*'],
];

const q = (s: string): string => encodeURIComponent(s);

test('every row of the precedence table reports its precedence and beats the row below', async (t) => {
  const srv = await startServer(t, { defaultIntentionPolicy: 'deny' });
  const base = srv.httpAddress();
  for (let i = 0; i < rows.length; i++) {
    const [prec, src, dst] = rows[i]!;
    // Start from nothing each round.
    for (const it of (await call(base, 'GET', '/v1/connect/intentions')).json as { ID: string }[])
      await call(base, 'DELETE', `/v1/connect/intentions/${it.ID}`);
    const put = await call(
      base,
      'PUT',
      `/v1/connect/intentions/exact?source=${q(src)}&destination=${q(dst)}`,
      { Action: 'allow' },
    );
    t.is(put.status, 200, put.text);
    const got = (
      await call(base, 'GET', `/v1/connect/intentions/exact?source=${q(src)}&destination=${q(dst)}`)
    ).json as { Precedence: number };
    t.is(got.Precedence, prec, `row ${src} -> ${dst}`);
    const below = rows[i + 1];
    if (below) {
      await call(
        base,
        'PUT',
        `/v1/connect/intentions/exact?source=${q(below[1])}&destination=${q(below[2])}`,
        { Action: 'deny' },
      );
    }
    t.deepEqual(
      (await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json,
      { Allowed: true },
      `precedence ${prec} allow must beat ${below ? below[0] : 'default'} deny`,
    );
    // Flip: deny at this level, allow below → denied.
    await call(base, 'PUT', `/v1/connect/intentions/exact?source=${q(src)}&destination=${q(dst)}`, {
      Action: 'deny',
    });
    if (below)
      await call(
        base,
        'PUT',
        `/v1/connect/intentions/exact?source=${q(below[1])}&destination=${q(below[2])}`,
        { Action: 'allow' },
      );
    t.deepEqual(
      (await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json,
      { Allowed: false },
      `precedence ${prec} deny must beat ${below ? below[0] : 'default'} allow`,
    );
  }
});

test('equal precedence: deny beats allow (intention API and a service-intentions entry)', async (t) => {
  const srv = await startServer(t, { defaultIntentionPolicy: 'allow' });
  const base = srv.httpAddress();
  // Two precedence-8 rules for web -> db: default/* allow (intentions API) and * deny (a
  // service-intentions entry, source namespace default). Equal precedence: deny wins.
  await call(base, 'PUT', '/v1/connect/intentions/exact?source=default/*&destination=db', {
    Action: 'allow',
  });
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: true,
  });
  const entry = await call(base, 'PUT', '/v1/config', {
    Kind: 'service-intentions',
    Name: 'db',
    Sources: [{ Name: '*', Action: 'deny' }],
  });
  t.is(entry.status, 200, entry.text);
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: false,
  });
  // L7 permissions count as deny for an L4 check.
  await call(base, 'DELETE', '/v1/config/service-intentions/db');
  await call(base, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', {
    Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }],
  });
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: false,
  });
});
