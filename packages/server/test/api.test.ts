// The HTTP API driven by the `consul` npm package (an independent client written by others), with
// plain HTTP where that client has no method.

import test from 'ava';
import Consul from 'consul';
import { isMeshError, silentLogger } from '@meshfed/core';
import { tempDir } from '@meshfed/testkit';
import { MeshServer } from '../src/index.js';
import { startServer, call } from './helpers.js';

const consulFor = (base: string, token?: string): Consul => {
  const u = new URL(base);
  return new Consul({ host: u.hostname, port: Number(u.port), ...(token ? { defaults: { token } } : {}) });
};

interface HealthRow {
  Node: { Node: string; Address: string };
  Service: {
    ID: string;
    Service: string;
    Port: number;
    Kind?: string;
    Proxy?: Record<string, unknown>;
    Tags: string[];
  };
  Checks: { CheckID: string; Status: string; Output: string }[];
}

test('agent register with a TTL check and a sidecar; catalog and health read back through the consul client', async (t) => {
  const srv = await startServer(t);
  const consul = consulFor(srv.httpAddress());
  await consul.agent.service.register({
    name: 'web',
    id: 'web-1',
    port: 8080,
    tags: ['v1', 'blue'],
    meta: { version: '1' },
    check: { ttl: '30s', name: 'web ttl' } as never,
    connect: {
      sidecarservice: {
        proxy: { destinationservicename: 'web', upstreams: [{ DestinationName: 'db', LocalBindPort: 9191 }] },
      },
    } as never,
  });

  const services = (await consul.agent.service.list()) as Record<
    string,
    { Service: string; Kind?: string; Port: number; Proxy?: Record<string, unknown> }
  >;
  t.deepEqual(Object.keys(services).sort(), ['consul', 'web-1', 'web-1-sidecar-proxy']);
  const sidecar = services['web-1-sidecar-proxy']!;
  t.is(sidecar.Service, 'web-sidecar-proxy');
  t.is(sidecar.Kind, 'connect-proxy');
  t.is(sidecar.Port, 21000);
  t.is(sidecar.Proxy?.['DestinationServiceName'], 'web');
  t.is(sidecar.Proxy?.['DestinationServiceID'], 'web-1');
  t.is(sidecar.Proxy?.['LocalServicePort'], 8080);

  const catalog = (await consul.catalog.service.nodes('web')) as {
    ServiceID: string;
    ServicePort: number;
    ServiceTags: string[];
    Node: string;
  }[];
  t.is(catalog.length, 1);
  t.is(catalog[0]!.ServicePort, 8080);
  t.deepEqual(catalog[0]!.ServiceTags, ['v1', 'blue']);
  t.is(catalog[0]!.Node, 'server-1');
  const all = (await consul.catalog.service.list()) as Record<string, string[]>;
  t.deepEqual(all['web'], ['blue', 'v1']);

  // A TTL check starts critical, so ?passing hides the instance until the app heartbeats.
  t.deepEqual(await consul.health.service({ service: 'web', passing: true }), []);
  const checks = (await consul.agent.check.list()) as Record<string, { Status: string; ServiceID: string }>;
  t.is(checks['service:web-1']?.Status, 'critical');
  await consul.agent.check.pass({ id: 'service:web-1', note: 'all good' } as never);
  const healthy = (await consul.health.service({ service: 'web', passing: true })) as HealthRow[];
  t.is(healthy.length, 1);
  t.is(healthy[0]!.Service.ID, 'web-1');
  t.is(healthy[0]!.Checks.find((c) => c.CheckID === 'service:web-1')?.Output, 'all good');

  // The sidecar's alias check follows the service it fronts.
  const viaHttp = (await call(srv.httpAddress(), 'GET', '/v1/health/connect/web')).json as HealthRow[];
  t.is(viaHttp.length, 1);
  t.is(viaHttp[0]!.Service.ID, 'web-1-sidecar-proxy');
  const alias = viaHttp[0]!.Checks.find((c) => c.CheckID === 'service:web-1-sidecar-proxy:2');
  t.is(alias?.Status, 'passing');
  await consul.agent.check.fail({ id: 'service:web-1', note: 'boom' } as never);
  const after = (await call(srv.httpAddress(), 'GET', '/v1/health/connect/web')).json as HealthRow[];
  t.is(after[0]!.Checks.find((c) => c.CheckID === 'service:web-1-sidecar-proxy:2')?.Status, 'critical');

  // Deregistering the service takes its sidecar and their checks with it.
  await consul.agent.service.deregister('web-1');
  t.deepEqual(Object.keys((await consul.agent.service.list()) as object), ['consul']);
  t.deepEqual(await consul.health.service('web'), []);
  t.deepEqual(await consul.health.checks('web-sidecar-proxy'), []);
});

test('catalog register/deregister with tagged addresses, kinds and node reads', async (t) => {
  const srv = await startServer(t);
  const consul = consulFor(srv.httpAddress());
  await consul.catalog.register({
    node: 'node-a',
    address: '10.0.0.5',
    service: {
      service: 'mesh-gateway',
      id: 'gw',
      port: 8443,
      taggedaddresses: {
        lan: { address: '10.0.0.5', port: 8443 },
        wan: { address: '198.51.100.5', port: 443 },
      },
    },
    check: { name: 'gw alive', status: 'passing', serviceid: 'gw' },
  } as never);
  // The consul client cannot send Kind on catalog register; plain HTTP can.
  const r = await call(srv.httpAddress(), 'PUT', '/v1/catalog/register', {
    Node: 'node-a',
    Address: '10.0.0.5',
    TaggedAddresses: { lan: '10.0.0.5', wan: '198.51.100.5' },
    Service: {
      Kind: 'mesh-gateway',
      ID: 'gw',
      Service: 'mesh-gateway',
      Port: 8443,
      TaggedAddresses: {
        lan: { Address: '10.0.0.5', Port: 8443 },
        wan: { Address: '198.51.100.5', Port: 443 },
      },
    },
  });
  t.is(r.status, 200);
  const nodes = (await consul.catalog.node.list()) as {
    Node: string;
    TaggedAddresses: Record<string, string>;
  }[];
  t.deepEqual(nodes.map((n) => n.Node).sort(), ['node-a', 'server-1']);
  t.is(nodes.find((n) => n.Node === 'node-a')?.TaggedAddresses['wan'], '198.51.100.5');
  const svc = (await consul.catalog.service.nodes('mesh-gateway')) as {
    ServiceKind: string;
    ServiceTaggedAddresses: Record<string, { Address: string; Port: number }>;
  }[];
  t.is(svc[0]!.ServiceKind, 'mesh-gateway');
  t.deepEqual(svc[0]!.ServiceTaggedAddresses['wan'], { Address: '198.51.100.5', Port: 443 });

  const fed = (await call(srv.httpAddress(), 'GET', '/v1/internal/federation-states/mesh-gateways'))
    .json as Record<string, HealthRow[]>;
  t.deepEqual(Object.keys(fed), ['dc1']);
  t.is(fed['dc1']![0]!.Service.ID, 'gw');
  t.is(fed['dc1']![0]!.Checks[0]!.Status, 'passing');

  const servers = (await consul.catalog.service.nodes('consul')) as {
    ServicePort: number;
    ServiceAddress: string;
  }[];
  t.deepEqual(
    servers.map((s) => [s.ServiceAddress, s.ServicePort]),
    [['127.0.0.1', 8300]],
  );
  t.deepEqual(await consul.catalog.datacenters(), ['dc1']);
  t.is(await consul.status.leader(), '127.0.0.1:8300');

  const node = (await consul.catalog.node.services('node-a')) as {
    Services: Record<string, { Port: number }>;
  };
  t.is(node.Services['gw']?.Port, 8443);
  await consul.catalog.deregister({ node: 'node-a', serviceid: 'gw' } as never);
  t.deepEqual(await consul.catalog.service.nodes('mesh-gateway'), []);
  await consul.catalog.deregister('node-a');
  t.deepEqual(
    ((await consul.catalog.node.list()) as { Node: string }[]).map((n) => n.Node),
    ['server-1'],
  );
});

test('blocking queries: X-Consul-Index on every read, wake on a change, time out without one', async (t) => {
  const srv = await startServer(t);
  const base = srv.httpAddress();
  const first = await call(base, 'GET', '/v1/health/service/api');
  const index = Number(first.headers['x-consul-index']);
  t.true(index >= 1);
  t.is(first.headers['x-consul-knownleader'], 'true');
  t.is(first.headers['x-consul-lastcontact'], '0');

  // No change: the query returns after wait (+ at most wait/16 jitter) with the same index.
  const t0 = Date.now();
  const idle = await call(base, 'GET', `/v1/health/service/api?index=${index}&wait=300ms`);
  const took = Date.now() - t0;
  t.true(took >= 290 && took < 300 * (1 + 1 / 16) + 1000, `took ${took} ms`);
  t.is(Number(idle.headers['x-consul-index']), index);
  t.deepEqual(idle.json, []);

  // A write to another service does not wake it; a write to this one does.
  const blocked = call(base, 'GET', `/v1/health/service/api?index=${index}&wait=20s`);
  const consul = consulFor(base);
  await consul.agent.service.register({ name: 'other', port: 1 });
  await consul.agent.service.register({ name: 'api', port: 9000 });
  const woke = await blocked;
  t.true(Number(woke.headers['x-consul-index']) > index);
  t.is((woke.json as HealthRow[])[0]?.Service.Port, 9000);

  // The consul client's own watch sees changes too.
  const watch = consul.watch({ method: consul.health.service, options: { service: 'api' } as never });
  t.teardown(() => watch.end());
  const seen: number[] = [];
  await new Promise<void>((resolve, reject) => {
    watch.on('error', reject);
    watch.on('change', (data: HealthRow[]) => {
      seen.push(data[0]?.Service.Port ?? 0);
      if (seen.length === 1) void consul.agent.service.register({ name: 'api', port: 9001 });
      else resolve();
    });
  });
  t.deepEqual(seen, [9000, 9001]);
});

test('intentions: CRUD by exact and ID, match, check and authorize through the API', async (t) => {
  const srv = await startServer(t, { defaultIntentionPolicy: 'deny' });
  const base = srv.httpAddress();
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: false,
  });
  t.is(
    (
      await call(base, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', {
        Action: 'allow',
        Description: 'web reads db',
      })
    ).status,
    200,
  );
  const got = (await call(base, 'GET', '/v1/connect/intentions/exact?source=web&destination=db'))
    .json as Record<string, unknown>;
  t.is(got['Action'], 'allow');
  t.is(got['Precedence'], 9);
  t.is(got['SourceName'], 'web');
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: true,
  });

  const created = await call(base, 'POST', '/v1/connect/intentions', {
    SourceName: '*',
    DestinationName: 'db',
    Action: 'deny',
  });
  t.is(created.status, 200);
  const id = (created.json as { ID: string }).ID;
  const dup = await call(base, 'POST', '/v1/connect/intentions', {
    SourceName: '*',
    DestinationName: 'db',
    Action: 'allow',
  });
  t.is(dup.status, 409);
  t.is(dup.headers['x-meshfed-error-code'], 'MESH_ERR_API_CONFLICT');
  t.is(
    ((await call(base, 'GET', `/v1/connect/intentions/${id}`)).json as { Precedence: number }).Precedence,
    8,
  );
  // The exact intention (precedence 9) still wins over the wildcard deny.
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: true,
  });
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=api&destination=db')).json, {
    Allowed: false,
  });

  const list = (await call(base, 'GET', '/v1/connect/intentions')).json as { SourceName: string }[];
  t.deepEqual(
    list.map((i) => i.SourceName),
    ['web', '*'],
  );
  const match = (await call(base, 'GET', '/v1/connect/intentions/match?by=destination&name=db'))
    .json as Record<string, unknown[]>;
  t.is(match['db']?.length, 2);

  const auth = await call(base, 'POST', '/v1/agent/connect/authorize', {
    Target: 'db',
    ClientCertURI: 'spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web',
  });
  t.is((auth.json as { Authorized: boolean }).Authorized, true);

  t.is(
    (
      await call(base, 'PUT', `/v1/connect/intentions/${id}`, {
        SourceName: '*',
        DestinationName: 'db',
        Action: 'allow',
      })
    ).status,
    200,
  );
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=api&destination=db')).json, {
    Allowed: true,
  });
  t.is((await call(base, 'DELETE', `/v1/connect/intentions/${id}`)).status, 200);
  t.is((await call(base, 'GET', `/v1/connect/intentions/${id}`)).status, 404);
  t.is((await call(base, 'DELETE', '/v1/connect/intentions/exact?source=web&destination=db')).status, 200);
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions')).json, []);
});

test('config entries: write, read, list, check-and-set, delete, and a service-intentions entry governs check', async (t) => {
  const srv = await startServer(t, { defaultIntentionPolicy: 'deny' });
  const base = srv.httpAddress();
  t.is(
    (await call(base, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'web', Protocol: 'http' })).json,
    true,
  );
  const entry = (await call(base, 'GET', '/v1/config/service-defaults/web')).json as {
    Protocol: string;
    ModifyIndex: number;
  };
  t.is(entry.Protocol, 'http');
  t.is(
    (
      await call(base, 'PUT', `/v1/config?cas=${entry.ModifyIndex + 100}`, {
        Kind: 'service-defaults',
        Name: 'web',
        Protocol: 'grpc',
      })
    ).json,
    false,
  );
  t.is(
    ((await call(base, 'GET', '/v1/config/service-defaults/web')).json as { Protocol: string }).Protocol,
    'http',
  );
  t.is(
    (
      await call(base, 'PUT', `/v1/config?cas=${entry.ModifyIndex}`, {
        Kind: 'service-defaults',
        Name: 'web',
        Protocol: 'grpc',
      })
    ).json,
    true,
  );
  t.is(
    (await call(base, 'PUT', '/v1/config?cas=0', { Kind: 'service-defaults', Name: 'web', Protocol: 'tcp' }))
      .json,
    false,
  );

  const resolver = {
    Kind: 'service-resolver',
    Name: 'db',
    DefaultSubset: 'v1',
    Subsets: { v1: { Filter: 'Service.Meta.version == 1' }, v2: { Filter: 'Service.Meta.version == 2' } },
    Failover: { '*': { Datacenters: ['dc2', 'dc3'] } },
  };
  t.is((await call(base, 'PUT', '/v1/config', resolver)).json, true);
  // A splitter on a tcp service would do nothing: refused as Consul does, until db speaks http.
  const tcpSplit = await call(base, 'PUT', '/v1/config', {
    Kind: 'service-splitter',
    Name: 'db',
    Splits: [{ Weight: 100, ServiceSubset: 'v1' }],
  });
  t.is(tcpSplit.status, 400);
  t.regex(tcpSplit.text, /discovery chain "db" uses protocol "tcp".*set Protocol to http/);
  t.is((await call(base, 'GET', '/v1/config/service-splitter/db')).status, 404, 'nothing stored');
  t.is(
    (await call(base, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'db', Protocol: 'http' })).json,
    true,
  );
  t.is(
    (
      await call(base, 'PUT', '/v1/config', {
        Kind: 'service-splitter',
        Name: 'db',
        Splits: [
          { Weight: 90, ServiceSubset: 'v1' },
          { Weight: 10, ServiceSubset: 'v2' },
        ],
      })
    ).json,
    true,
  );
  t.is(
    (
      await call(base, 'PUT', '/v1/config', {
        Kind: 'service-router',
        Name: 'db',
        Routes: [{ Match: { HTTP: { PathPrefix: '/admin' } }, Destination: { ServiceSubset: 'v2' } }],
      })
    ).json,
    true,
  );
  t.is(
    (
      await call(base, 'PUT', '/v1/config', {
        Kind: 'proxy-defaults',
        Name: 'global',
        Config: { protocol: 'http' },
        MeshGateway: { Mode: 'local' },
      })
    ).json,
    true,
  );
  // ... and db cannot go back to tcp, nor lose its http defaults, while it has a router and a splitter.
  const backToTcp = await call(base, 'PUT', '/v1/config', {
    Kind: 'service-defaults',
    Name: 'db',
    Protocol: 'tcp',
  });
  t.is(backToTcp.status, 400);
  t.regex(backToTcp.text, /service-router and service-splitter/);
  t.is(
    (await call(base, 'DELETE', '/v1/config/service-defaults/db')).status,
    200,
    'proxy-defaults says http',
  );
  t.is(
    (
      await call(base, 'PUT', '/v1/config', {
        Kind: 'proxy-defaults',
        Name: 'global',
        Config: { protocol: 'tcp' },
      })
    ).status,
    400,
  );
  const resolvers = (await call(base, 'GET', '/v1/config/service-resolver')).json as { Name: string }[];
  t.deepEqual(
    resolvers.map((r) => r.Name),
    ['db'],
  );

  t.is(
    (
      await call(base, 'PUT', '/v1/config', {
        Kind: 'service-intentions',
        Name: 'db',
        Sources: [{ Name: 'web', Action: 'allow' }],
      })
    ).json,
    true,
  );
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: true,
  });
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=api&destination=db')).json, {
    Allowed: false,
  });

  t.is((await call(base, 'DELETE', '/v1/config/service-intentions/db')).status, 200);
  t.deepEqual((await call(base, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).json, {
    Allowed: false,
  });
  t.is((await call(base, 'GET', '/v1/config/service-intentions/db')).status, 404);
});

test('bad input gets 400 naming the field, stores nothing, and the server keeps serving', async (t) => {
  const srv = await startServer(t, { http: { bindAddress: '127.0.0.1', port: 0, maxBodyBytes: 4096 } });
  const base = srv.httpAddress();
  const before = Number((await call(base, 'GET', '/v1/catalog/services')).headers['x-consul-index']);
  const cases: [string, string, unknown, number, RegExp][] = [
    ['PUT', '/v1/agent/service/register', '{"Name": "web",', 400, /body: request decode failed/],
    [
      'PUT',
      '/v1/agent/service/register',
      { Name: 'Web' },
      400,
      /^Name: service name "Web" contains uppercase "W"/,
    ],
    ['PUT', '/v1/agent/service/register', { Name: 'web.v1' }, 400, /^Name: .*contains "\."/],
    [
      'PUT',
      '/v1/agent/service/register',
      { Name: 'a'.repeat(64) },
      400,
      /^Name: .*64 bytes; the limit is 63/,
    ],
    ['PUT', '/v1/agent/service/register', { Name: 'web', Port: 'eighty' }, 400, /^Port: expected a number/],
    [
      'PUT',
      '/v1/agent/service/register',
      { Name: 'web', Kind: 'ingress-gateway' },
      400,
      /^Kind: must be one of/,
    ],
    [
      'PUT',
      '/v1/agent/service/register',
      { Name: 'web', Check: { TCP: '127.0.0.1:1' } },
      400,
      /^Check\.Interval: a TCP check needs an Interval/,
    ],
    [
      'PUT',
      '/v1/agent/service/register',
      { Name: 'web', Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'DB' }] } } } },
      400,
      /^Connect\.SidecarService\.Proxy\.Upstreams\[0\]\.DestinationName: /,
    ],
    ['PUT', '/v1/catalog/register', { Node: 'n1', Address: 7 }, 400, /^Address: expected a string/],
    ['PUT', '/v1/config', { Kind: 'service-widget', Name: 'x' }, 400, /^Kind: unknown config entry kind/],
    [
      'PUT',
      '/v1/config',
      { Kind: 'service-defaults', Name: 'web', Protocol: 'udp' },
      400,
      /^Protocol: must be one of/,
    ],
    [
      'PUT',
      '/v1/config',
      { Kind: 'service-splitter', Name: 'web', Splits: [{ Weight: 50 }] },
      400,
      /^Splits: weights must add up to 100/,
    ],
    [
      'PUT',
      '/v1/config',
      { Kind: 'service-resolver', Name: 'web', Subsets: { v1: { Filter: 7 } } },
      400,
      /^Subsets\.v1\.Filter: expected a string/,
    ],
    [
      'PUT',
      '/v1/config',
      { Kind: 'service-resolver', Name: 'web', DefaultSubset: 'v9' },
      400,
      /^DefaultSubset: "v9" is not one of the Subsets/,
    ],
    [
      'PUT',
      '/v1/config',
      { Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { PathPrefix: 'admin' } } }] },
      400,
      /^Routes\[0\]\.Match\.HTTP\.PathPrefix: must start with "\/"/,
    ],
    [
      'PUT',
      '/v1/config',
      { Kind: 'service-intentions', Name: 'db', Sources: [{ Name: 'web', Action: 'maybe' }] },
      400,
      /^Sources\[0\]\.Action: must be one of/,
    ],
    [
      'PUT',
      '/v1/config',
      { Kind: 'proxy-defaults', Name: 'web' },
      400,
      /^Name: proxy-defaults must be named "global"/,
    ],
    [
      'PUT',
      '/v1/connect/intentions/exact?source=web&destination=db',
      { Action: 'permit' },
      400,
      /^body\.Action: must be one of/,
    ],
    ['PUT', '/v1/connect/intentions/exact?source=Web&destination=db', { Action: 'allow' }, 400, /^source: /],
    ['GET', '/v1/health/service/web?index=abc', undefined, 400, /^index: expected a non-negative integer/],
    ['GET', '/v1/health/service/web?index=5&wait=forever', undefined, 400, /^wait: expected a duration/],
    ['PUT', '/v1/agent/service/register', { Name: 'web', Meta: { big: 'x'.repeat(5000) } }, 413, /limit/],
    ['GET', '/v1/catalog/services?dc=dc9', undefined, 404, /No path to datacenter "dc9"/],
    ['GET', '/v1/connect/ca/roots', undefined, 503, /CA is not available/],
    ['GET', '/v1/no/such/thing', undefined, 404, /no such endpoint/],
    ['DELETE', '/v1/catalog/services', undefined, 405, /not allowed/],
  ];
  for (const [method, path, body, status, re] of cases) {
    const r = await call(base, method, path, body);
    t.is(r.status, status, `${method} ${path} ${JSON.stringify(body)?.slice(0, 80)} → ${r.text}`);
    t.regex(r.text, re, `${method} ${path}`);
    t.regex(String(r.headers['x-meshfed-error-code']), /^MESH_ERR_/);
  }
  const after = await call(base, 'GET', '/v1/catalog/services');
  t.is(Number(after.headers['x-consul-index']), before);
  t.deepEqual(after.json, { consul: [] });
  t.deepEqual((await call(base, 'GET', '/v1/config/service-defaults')).json, []);
});

test('ACL: writes need the management token (X-Consul-Token or Bearer); a wrong one gets 403 and changes nothing', async (t) => {
  const srv = await startServer(t, { acl: { enabled: true, managementToken: 's3cr3t-token' } });
  const base = srv.httpAddress();
  const denied = await call(base, 'PUT', '/v1/agent/service/register', { Name: 'web' });
  t.is(denied.status, 403);
  t.is(denied.headers['x-meshfed-error-code'], 'MESH_ERR_API_PERMISSION_DENIED');
  t.is(
    (await call(base, 'PUT', '/v1/agent/service/register', { Name: 'web' }, { 'x-consul-token': 'wrong' }))
      .status,
    403,
  );
  t.deepEqual((await call(base, 'GET', '/v1/catalog/services')).json, { consul: [] });
  await t.throwsAsync(consulFor(base).agent.service.register({ name: 'web' }));
  await consulFor(base, 's3cr3t-token').agent.service.register({ name: 'web' });
  t.is(
    (
      await call(
        base,
        'PUT',
        '/v1/config',
        { Kind: 'service-defaults', Name: 'db' },
        { authorization: 'Bearer s3cr3t-token' },
      )
    ).status,
    200,
  );
  t.deepEqual(Object.keys((await call(base, 'GET', '/v1/catalog/services')).json as object).sort(), [
    'consul',
    'web',
  ]);
});

test('a non-loopback bind without TLS is refused', (t) => {
  const err = t.throws(
    () =>
      new MeshServer(
        {
          datacenter: 'dc1',
          primaryDatacenter: 'dc1',
          nodeName: 'n',
          dataDir: tempDir(t),
          domain: 'consul',
          http: { bindAddress: '0.0.0.0', port: 0 },
          acl: { enabled: false },
          defaultIntentionPolicy: 'allow',
          serverPort: 8300,
          advertiseAddress: '127.0.0.1',
        },
        { logger: silentLogger },
      ),
  );
  t.true(isMeshError(err, 'MESH_ERR_SERVER_TLS_REQUIRED'));
});
