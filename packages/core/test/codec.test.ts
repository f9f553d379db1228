import test from 'ava';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { decodeFrame, encodeFrame, FRAME_VERSION, isMeshError } from '@meshfed/core';

test('frames round-trip type, id and body', (t) => {
  const body = {
    kind: 'service-intentions',
    index: 12345,
    nested: { list: [1, 'two', null, true] },
    bytes: Buffer.from([1, 2, 3]),
  };
  const r = decodeFrame(encodeFrame({ type: 'repl.change', id: 7, body }));
  t.true(r.ok);
  if (r.ok) t.deepEqual(r.frame, { type: 'repl.change', id: 7, body });
});

test('oversized frames are refused on both ends', (t) => {
  const err = t.throws(() => encodeFrame({ type: 'big', id: 0, body: 'x'.repeat(2000) }, 1000));
  t.true(isMeshError(err, 'MESH_ERR_FRAME_TOO_LARGE'));
  const r = decodeFrame(Buffer.alloc(2000), 1000);
  t.false(r.ok);
  if (!r.ok) t.is(r.code, 'MESH_ERR_FRAME_TOO_LARGE');
});

test('wrong version, wrong shape and garbage are reasons, not exceptions', (t) => {
  const p = new Packr({ useRecords: false });
  const v2 = decodeFrame(p.pack([FRAME_VERSION + 1, 't', 0, null]));
  t.false(v2.ok);
  if (!v2.ok) t.is(v2.code, 'MESH_ERR_FRAME_VERSION');
  for (const bad of [
    p.pack({ a: 1 }),
    p.pack([1, '', 0, null]),
    p.pack([1, 't', -1, null]),
    p.pack([1, 't', 1.5, null]),
    Buffer.from([0xc1]),
    Buffer.alloc(0),
  ]) {
    const r = decodeFrame(bad);
    t.false(r.ok);
    if (!r.ok) t.is(r.code, 'MESH_ERR_FRAME_DECODE');
  }
});

test('property: decodeFrame never throws on random bytes', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
      const r = decodeFrame(bytes);
      return typeof r.ok === 'boolean';
    }),
    { numRuns: 5000 },
  );
  t.pass();
});
