import test from 'ava';
import { decideIntention, intentionPrecedence, sortIntentions, type IntentionRule } from '@meshfed/core';

const ep = (s: string) => {
  const [namespace, name] = s.split('/') as [string, string];
  return { namespace, name };
};
let seq = 0;
const rule = (src: string, dst: string, action: 'allow' | 'deny', hasPermissions = false): IntentionRule => ({
  id: `i${++seq}`,
  source: ep(src),
  destination: ep(dst),
  action,
  hasPermissions,
});

// Every row of Consul's table: [source pattern, destination pattern, precedence].
const table: [string, string, number][] = [
  ['default/web', 'default/db', 9],
  ['default/*', 'default/db', 8],
  ['*/*', 'default/db', 7],
  ['default/web', 'default/*', 6],
  ['default/*', 'default/*', 5],
  ['*/*', 'default/*', 4],
  ['default/web', '*/*', 3],
  ['default/*', '*/*', 2],
  ['*/*', '*/*', 1],
];

test('precedence of every row of the table', (t) => {
  for (const [src, dst, prec] of table)
    t.is(intentionPrecedence(rule(src, dst, 'allow')), prec, `${src} -> ${dst}`);
});

test('each row wins over every less precise row, whatever the actions', (t) => {
  const web = ep('default/web');
  const db = ep('default/db');
  for (let i = 0; i < table.length; i++) {
    // The row under test says the opposite of all less precise rows: it must decide.
    for (const action of ['allow', 'deny'] as const) {
      const other = action === 'allow' ? 'deny' : 'allow';
      const rules = table.map(([s, d], j) => rule(s, d, j === i ? action : other)).slice(i);
      const decision = decideIntention(rules, web, db, other);
      t.is(decision.allowed, action === 'allow', `row ${table[i]![2]} ${action}`);
      t.is(decision.precedence, table[i]![2]);
    }
  }
});

test('deny beats allow at equal precedence, in either order', (t) => {
  const a = rule('default/web', 'default/db', 'allow');
  const d = rule('default/web', 'default/db', 'deny');
  t.false(decideIntention([a, d], ep('default/web'), ep('default/db'), 'allow').allowed);
  t.false(decideIntention([d, a], ep('default/web'), ep('default/db'), 'allow').allowed);
  t.deepEqual(
    sortIntentions([a, d]).map((r) => r.action),
    ['deny', 'allow'],
  );
});

test('no match falls back to the default policy, and the reason says so', (t) => {
  const rules = [rule('default/api', 'default/db', 'allow')];
  const deny = decideIntention(rules, ep('default/web'), ep('default/db'), 'deny');
  t.false(deny.allowed);
  t.is(deny.intention, undefined);
  t.regex(deny.reason, /default policy is deny/);
  t.true(decideIntention(rules, ep('default/web'), ep('default/db'), 'allow').allowed);
});

test('an intention with L7 permissions denies an L4 connection', (t) => {
  const d = decideIntention(
    [rule('default/web', 'default/db', 'allow', true)],
    ep('default/web'),
    ep('default/db'),
    'allow',
  );
  t.false(d.allowed);
  t.regex(d.reason, /L7 permissions/);
});
