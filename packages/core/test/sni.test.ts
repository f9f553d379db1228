import test from 'ava';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import {
  datacenterSni,
  formatSni,
  parseSni,
  serverSni,
  serviceSni,
  trustDomainFor,
  type ParsedSni,
} from '@meshfed/core';

const td = '36cb52cd-4058-f811-0432-6798a240c5d3.consul';
const ctx = { trustDomain: td, domain: 'consul' };

// The forms documented by Consul (agent/connect/sni.go and the mesh-gateway docs).
test("Consul's documented SNI forms are built exactly", (t) => {
  t.is(
    serviceSni({ service: 'api', namespace: 'default', datacenter: 'dc2' }, td),
    `api.default.dc2.internal.${td}`,
  );
  t.is(
    serviceSni({ service: 'api', datacenter: 'dc2', subset: 'v1' }, td),
    `v1.api.default.dc2.internal.${td}`,
  );
  t.is(
    serviceSni({ service: 'api', namespace: 'default', partition: 'part1', datacenter: 'dc2' }, td),
    `api.default.part1.dc2.internal-v1.${td}`,
  );
  t.is(
    serviceSni({ service: 'api', partition: 'part1', datacenter: 'dc2', subset: 'v1' }, td),
    `v1.api.default.part1.dc2.internal-v1.${td}`,
  );
  t.is(
    serviceSni({ service: 'api', partition: 'default', datacenter: 'dc2' }, td),
    `api.default.dc2.internal.${td}`,
  );
  t.is(datacenterSni('dc2', td), `dc2.internal.${td}`);
  t.is(datacenterSni('dc2', td, 'part1'), `part1.dc2.internal-v1.${td}`);
  t.is(serverSni('dc2', 'consul'), 'server.dc2.consul');
  t.is(serverSni('dc2', 'consul', 'node1'), 'node1.server.dc2.consul');
  t.is(trustDomainFor('36CB52CD-4058-F811-0432-6798A240C5D3'), td);
});

test("Consul's documented SNI forms parse to what they address", (t) => {
  t.deepEqual(parseSni(`api.default.dc2.internal.${td}`, ctx), {
    ok: true,
    value: {
      kind: 'service',
      service: 'api',
      namespace: 'default',
      partition: 'default',
      datacenter: 'dc2',
      subset: undefined,
    },
  });
  t.deepEqual(parseSni(`v1.api.default.dc2.internal.${td}`, ctx), {
    ok: true,
    value: {
      kind: 'service',
      service: 'api',
      namespace: 'default',
      partition: 'default',
      datacenter: 'dc2',
      subset: 'v1',
    },
  });
  t.deepEqual(parseSni(`api.default.part1.dc2.internal-v1.${td}`, ctx), {
    ok: true,
    value: {
      kind: 'service',
      service: 'api',
      namespace: 'default',
      partition: 'part1',
      datacenter: 'dc2',
      subset: undefined,
    },
  });
  t.deepEqual(parseSni(`dc2.internal.${td}`, ctx), {
    ok: true,
    value: { kind: 'datacenter', datacenter: 'dc2', partition: 'default' },
  });
  t.deepEqual(parseSni(`part1.dc2.internal-v1.${td}`, ctx), {
    ok: true,
    value: { kind: 'datacenter', datacenter: 'dc2', partition: 'part1' },
  });
  t.deepEqual(parseSni('server.dc3.consul', ctx), {
    ok: true,
    value: { kind: 'server', datacenter: 'dc3', node: undefined },
  });
  t.deepEqual(parseSni('srv-1.server.dc1.consul', ctx), {
    ok: true,
    value: { kind: 'server', datacenter: 'dc1', node: 'srv-1' },
  });
  // DNS is case-insensitive; so is the parser.
  t.true(parseSni(`API.default.dc2.internal.${td.toUpperCase()}`, ctx).ok);
});

test('malformed and foreign SNI names are rejected with a reason', (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['example.com', /neither under the trust domain/],
    [`a.b.c.d.e.internal.${td}`, /1, 3 or 4 labels/],
    [`api.default.internal.${td}`, /1, 3 or 4 labels/],
    [`x.api.default.dc2.query.${td}`, /unsupported SNI form "query"/],
    [`a.b.c.d.e.f.internal-v1.${td}`, /2, 4 or 5 labels/],
    [`api.default..internal.${td}`, /must not be empty/],
    [`api_x.default.dc2.internal.${td}`, /contains "_"/],
    ['foo.server.dc1.extra.consul', /server SNI must be/],
    ['server.dc_1.consul', /contains "_"/],
    ['a'.repeat(254), /longer than 253/],
  ];
  for (const [sni, reason] of cases) {
    const r = parseSni(sni, ctx);
    t.false(r.ok, sni);
    if (!r.ok) t.regex(r.reason, reason, sni);
  }
});

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);

test('property: every buildable SNI parses back to the same target', (t) => {
  const parsedArb: fc.Arbitrary<ParsedSni> = fc.oneof(
    fc.record({
      kind: fc.constant('service' as const),
      service: label,
      namespace: label,
      partition: label,
      datacenter: label,
      subset: fc.option(label, { nil: undefined }),
    }),
    fc.record({ kind: fc.constant('datacenter' as const), datacenter: label, partition: label }),
    fc.record({
      kind: fc.constant('server' as const),
      datacenter: label,
      node: fc.option(label, { nil: undefined }),
    }),
  );
  fc.assert(
    fc.property(parsedArb, (p) => {
      const sni = formatSni(p, ctx);
      const back = parseSni(sni, ctx);
      if (!back.ok) return false;
      return formatSni(back.value, ctx) === sni && isDeepStrictEqual(back.value, { ...p });
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('property: parseSni never throws on arbitrary input', (t) => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => {
      const r = parseSni(s, ctx);
      return typeof r.ok === 'boolean';
    }),
    { numRuns: 3000 },
  );
  t.pass();
});
