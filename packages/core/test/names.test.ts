import test from 'ava';
import { checkName, datacenter, isMeshError, nameProblem, serviceName } from '@meshfed/core';

test('valid DNS-label names pass', (t) => {
  for (const n of ['dc1', 'counting', 'a', 'web-2', 'x'.repeat(63), '0abc'])
    t.is(nameProblem('service', n), undefined, n);
});

test('each kind of bad name gets a reason that says what is wrong', (t) => {
  t.regex(nameProblem('datacenter', 'dc.1')!, /contains "\." at position 3.*SNI names are positional/);
  t.regex(nameProblem('service', 'Web')!, /uppercase "W".*names are lowercase \(web\)/);
  t.regex(nameProblem('service', 'x'.repeat(64))!, /64 bytes; the limit is 63/);
  t.regex(nameProblem('service', '-web')!, /start and end with a letter or digit/);
  t.regex(nameProblem('service', 'web-')!, /start and end/);
  t.regex(nameProblem('node', 'a_b')!, /contains "_" at position 2/);
  t.regex(nameProblem('namespace', '')!, /must not be empty/);
  t.regex(nameProblem('partition', 42)!, /must be a string, got number 42/);
  t.regex(nameProblem('service', 'ünï')!, /contains "ü"/);
});

test('constructors throw MeshError with MESH_ERR_NAME_INVALID; checkName returns a Result', (t) => {
  t.is(datacenter('dc2') as string, 'dc2');
  const err = t.throws(() => serviceName('api.v1'));
  t.true(isMeshError(err, 'MESH_ERR_NAME_INVALID'));
  t.is(err?.message.includes('api.v1'), true);
  t.deepEqual(checkName('service', 'ok'), { ok: true, value: 'ok' });
  t.false(checkName('service', 'NO').ok);
});
