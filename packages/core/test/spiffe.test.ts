import test from 'ava';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import {
  agentSpiffeId,
  formatSpiffeId,
  meshGatewaySpiffeId,
  parseSpiffeId,
  serverSpiffeId,
  serviceSpiffeId,
  signingSpiffeId,
  type SpiffeId,
} from '@meshfed/core';

const td = '11111111-2222-3333-4444-555555555555.consul';

test("Consul's SPIFFE forms are built exactly", (t) => {
  t.is(
    serviceSpiffeId({ trustDomain: td, datacenter: 'dc1', service: 'web' }),
    `spiffe://${td}/ns/default/dc/dc1/svc/web`,
  );
  t.is(
    serviceSpiffeId({
      trustDomain: td,
      datacenter: 'dc1',
      service: 'web',
      namespace: 'ns1',
      partition: 'ap1',
    }),
    `spiffe://${td}/ap/ap1/ns/ns1/dc/dc1/svc/web`,
  );
  t.is(serverSpiffeId(td, 'dc1'), `spiffe://${td}/agent/server/dc/dc1`);
  t.is(agentSpiffeId(td, 'dc1', 'abc-123'), `spiffe://${td}/agent/client/dc/dc1/id/abc-123`);
  t.is(meshGatewaySpiffeId(td, 'dc2'), `spiffe://${td}/gateway/mesh/dc/dc2`);
  t.is(meshGatewaySpiffeId(td, 'dc2', 'ap1'), `spiffe://${td}/ap/ap1/gateway/mesh/dc/dc2`);
  t.is(signingSpiffeId(td), `spiffe://${td}`);
});

test('SPIFFE IDs parse to their kind', (t) => {
  t.deepEqual(parseSpiffeId(`spiffe://${td}/ns/default/dc/dc2/svc/counting`), {
    ok: true,
    value: {
      kind: 'service',
      trustDomain: td,
      partition: 'default',
      namespace: 'default',
      datacenter: 'dc2',
      service: 'counting',
    },
  });
  t.deepEqual(parseSpiffeId(`spiffe://${td}/gateway/mesh/dc/dc2`), {
    ok: true,
    value: { kind: 'mesh-gateway', trustDomain: td, partition: 'default', datacenter: 'dc2' },
  });
  t.deepEqual(parseSpiffeId(`spiffe://${td}`), { ok: true, value: { kind: 'signing', trustDomain: td } });
});

test('malformed SPIFFE IDs are rejected with a reason', (t) => {
  const cases: [string, RegExp][] = [
    ['http://x/ns/default/dc/dc1/svc/web', /must start with spiffe/],
    ['spiffe://UPPER.consul/ns/a/dc/b/svc/c', /trust domain/],
    [`spiffe://${td}/ns/default/dc/dc1/svc/We.b`, /uppercase|contains/],
    [`spiffe://${td}/ns/default/dc/dc1/svc`, /unrecognised SPIFFE path/],
    [`spiffe://${td}/ap/x/agent/server/dc/dc1`, /only service and mesh-gateway/],
    [`spiffe://${td}/agent/client/dc/dc1/id/bad id`, /node ID/],
  ];
  for (const [uri, reason] of cases) {
    const r = parseSpiffeId(uri);
    t.false(r.ok, uri);
    if (!r.ok) t.regex(r.reason, reason, uri);
  }
});

test('property: SPIFFE IDs round-trip', (t) => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,15}[a-z0-9])?$/);
  const arb: fc.Arbitrary<SpiffeId> = fc.oneof(
    fc.record({
      kind: fc.constant('service' as const),
      trustDomain: fc.constant(td),
      partition: label,
      namespace: label,
      datacenter: label,
      service: label,
    }),
    fc.record({ kind: fc.constant('server' as const), trustDomain: fc.constant(td), datacenter: label }),
    fc.record({
      kind: fc.constant('mesh-gateway' as const),
      trustDomain: fc.constant(td),
      partition: label,
      datacenter: label,
    }),
    fc.record({
      kind: fc.constant('agent' as const),
      trustDomain: fc.constant(td),
      datacenter: label,
      nodeId: label,
    }),
  );
  fc.assert(
    fc.property(arb, (id) => {
      const back = parseSpiffeId(formatSpiffeId(id));
      return back.ok && isDeepStrictEqual(back.value, { ...id });
    }),
    { numRuns: 2000 },
  );
  t.pass();
});
