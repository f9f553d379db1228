import http from 'node:http';
import test from 'ava';
import { ApiClient } from '@meshfed/client';
import { silentLogger } from '@meshfed/core';
import { waitFor } from '@meshfed/testkit';
import { freePort } from '@meshfed/testkit';
import { CatalogRouteSource, GatewayRegistration, formatRoutesTable, runGateway } from '../src/index.js';
import { listen, makePki, readLine, startGateway, tlsBackend, tlsClient } from './fixtures.js';

const TD = '11111111-2222-3333-4444-555555555555.consul';

/** A small Consul-shaped HTTP server: fixed paths, X-Consul-Index, blocking queries honoured. */
class FakeConsul {
  index = 10;
  private waiters: (() => void)[] = [];
  readonly seen: string[] = [];
  readonly puts: { path: string; body: unknown }[] = [];
  state: {
    roots: unknown;
    services: Record<string, string[]>;
    health: Record<string, { entry: unknown; status: string }[]>;
    gateways: Record<string, unknown[]>;
    servers: unknown[];
  } = { roots: { TrustDomain: TD, Roots: [] }, services: {}, health: {}, gateways: {}, servers: [] };

  change(fn: (s: FakeConsul['state']) => void): void {
    fn(this.state);
    this.index++;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    this.seen.push(`${req.method} ${url.pathname}${url.search}`);
    if (req.method === 'PUT') {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        this.puts.push({ path: url.pathname, body: body ? JSON.parse(body) : undefined });
        res.end('true');
      });
      return;
    }
    const answer = (): void => {
      const body = this.body(url);
      if (body === undefined) {
        res.writeHead(404);
        return void res.end('not found');
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-consul-index': String(this.index) });
      res.end(JSON.stringify(body));
    };
    const wantIndex = Number(url.searchParams.get('index') ?? 0);
    if (wantIndex > 0 && wantIndex >= this.index) {
      const timer = setTimeout(answer, 2000);
      this.waiters.push(() => {
        clearTimeout(timer);
        answer();
      });
      return;
    }
    answer();
  };

  private body(url: URL): unknown {
    const p = url.pathname;
    if (p === '/v1/connect/ca/roots') return this.state.roots;
    if (p === '/v1/catalog/services') return this.state.services;
    if (p === '/v1/internal/federation-states/mesh-gateways') return this.state.gateways;
    if (p === '/v1/catalog/service/consul') return this.state.servers;
    const m = /^\/v1\/health\/connect\/(.+)$/.exec(p);
    if (m) {
      const all = this.state.health[decodeURIComponent(m[1]!)] ?? [];
      const passing = url.searchParams.has('passing');
      return all.filter((x) => !passing || x.status === 'passing').map((x) => x.entry);
    }
    return undefined;
  }
}

function sidecar(node: string, port: number, service: string): unknown {
  return {
    Node: { Node: node, Address: '127.0.0.1' },
    Service: {
      ID: `${service}-sidecar-proxy-${port}`,
      Service: `${service}-sidecar-proxy`,
      Kind: 'connect-proxy',
      Port: port,
      Address: '',
    },
    Checks: [{ Status: 'passing' }],
  };
}

test('catalog routes: local service, remote DC, server names; health and membership changes apply live', async (t) => {
  const counting = `counting.default.dc1.internal.${TD}`;
  const remoteSvc = `web.default.dc2.internal.${TD}`;
  const pki = makePki(t, [counting, remoteSvc, 's1.server.dc1.consul', 'server.dc2.consul']);
  const sc1 = await tlsBackend(t, pki, counting, (s) => void s.end('sidecar-1\n'));
  const sc2 = await tlsBackend(t, pki, counting, (s) => void s.end('sidecar-2\n'));
  const dc2gw = await tlsBackend(t, pki, remoteSvc, (s) => void s.end('dc2-gateway\n'));
  const dc2srv = await tlsBackend(
    t,
    pki,
    'server.dc2.consul',
    (s) => void s.end('dc2-gateway-for-servers\n'),
  );
  const s1 = await tlsBackend(t, pki, 's1.server.dc1.consul', (s) => void s.end('server-s1\n'));

  const fake = new FakeConsul();
  fake.state.services = { consul: [], counting: [], 'counting-sidecar-proxy': [] };
  fake.state.health = { counting: [{ entry: sidecar('n1', sc1, 'counting'), status: 'passing' }] };
  fake.state.gateways = {
    dc1: [
      { Node: { Node: 'gw1', Address: '127.0.0.1' }, Service: { Kind: 'mesh-gateway', Port: 1 }, Checks: [] },
    ],
    dc2: [
      {
        Node: { Node: 'gw2', Address: '10.9.9.9' },
        Service: {
          Kind: 'mesh-gateway',
          Port: 9,
          TaggedAddresses: {
            lan: { Address: '10.9.9.9', Port: 9 },
            wan: { Address: '127.0.0.1', Port: dc2gw },
          },
        },
        Checks: [{ Status: 'passing' }],
      },
    ],
  };
  fake.state.servers = [{ Node: 's1', Address: '127.0.0.1', ServiceAddress: '127.0.0.1', ServicePort: s1 }];
  const port = await listen(t, http.createServer(fake.handler));
  const client = new ApiClient({ address: `http://127.0.0.1:${port}` });
  t.teardown(() => client.close());
  const source = new CatalogRouteSource({ datacenter: 'dc1', wait: '2s' }, { client, logger: silentLogger });
  const { gw, port: gport, registry } = await startGateway(t, source);
  await waitFor(() => gw.ready(), { what: 'first catalog table' });

  const line = async (sni: string): Promise<string> => readLine(await tlsClient(gport, sni, pki.ca));
  t.is(await line(counting), 'sidecar-1', 'local service → its healthy sidecar');
  t.is(await line(remoteSvc), 'dc2-gateway', "remote DC service → that DC's gateway WAN address");
  t.is(await line('s1.server.dc1.consul'), 'server-s1', 'local server node name → its federation port');
  t.deepEqual(
    gw
      .routes()
      .toJSON()
      .find((r) => r.match === '*.server.dc2.consul'),
    {
      match: '*.server.dc2.consul',
      class: 'remote_server',
      datacenter: 'dc2',
      endpoints: [`127.0.0.1:${dc2gw}`],
    },
  );
  t.true(fake.seen.some((s) => s.startsWith('GET /v1/health/connect/counting') && s.includes('passing')));
  t.false(
    fake.seen.some((s) => s.includes('/v1/health/connect/counting-sidecar-proxy')),
    'sidecar services are not routes',
  );

  // dc2's gateway moves: routes follow (server traffic too)
  fake.change((s) => {
    const g = (s.gateways['dc2']![0] as { Service: { TaggedAddresses: { wan: { Port: number } } } }).Service;
    g.TaggedAddresses.wan.Port = dc2srv;
  });
  await waitFor(() => gw.routes().lookup('server.dc2.consul')?.endpoints[0]?.port === dc2srv, {
    what: 'moved gateway',
  });
  t.is(await line('server.dc2.consul'), 'dc2-gateway-for-servers');

  // the instance turns critical and a second one appears: new connections go to the healthy one
  fake.change((s) => {
    s.health['counting'] = [
      { entry: sidecar('n1', sc1, 'counting'), status: 'critical' },
      { entry: sidecar('n2', sc2, 'counting'), status: 'passing' },
    ];
  });
  await waitFor(() => gw.routes().lookup(counting)?.endpoints[0]?.port === sc2, {
    what: 'health change applied',
  });
  t.is(await line(counting), 'sidecar-2');

  // the service goes away entirely: its SNI no longer routes, and that is counted
  fake.change((s) => {
    s.services = { consul: [] };
  });
  await waitFor(() => gw.routes().lookup(counting) === undefined, { what: 'service removed' });
  await t.throwsAsync(tlsClient(gport, counting, pki.ca));
  t.regex(registry.render(), /gateway_no_route_total\{reason="unknown_sni"\} 1/);
  t.true(
    fake.seen.some((s) => /index=\d+/.test(s)),
    'watches used blocking queries',
  );
});

test('GatewayRegistration registers a mesh-gateway with LAN/WAN addresses and a TCP check, and deregisters', async (t) => {
  const fake = new FakeConsul();
  const port = await listen(t, http.createServer(fake.handler));
  const client = new ApiClient({ address: `http://127.0.0.1:${port}` });
  t.teardown(() => client.close());
  const reg = new GatewayRegistration(
    { lan: { host: '10.0.0.5', port: 8443 }, wan: { host: '203.0.113.7', port: 443 } },
    { client, logger: silentLogger },
  );
  await reg.start();
  t.like(fake.puts[0], {
    path: '/v1/agent/service/register',
    body: {
      Kind: 'mesh-gateway',
      Name: 'mesh-gateway',
      Port: 8443,
      TaggedAddresses: {
        lan: { Address: '10.0.0.5', Port: 8443 },
        wan: { Address: '203.0.113.7', Port: 443 },
      },
      Meta: { 'consul-wan-federation': '1' },
      Check: { TCP: '10.0.0.5:8443' },
    },
  });
  await reg.close();
  t.is(fake.puts[1]?.path, `/v1/agent/service/deregister/${reg.id}`);
});

test('runGateway with --http-addr --register: catalog routes on /routes, registered, deregistered on stop', async (t) => {
  const counting = `counting.default.dc1.internal.${TD}`;
  const pki = makePki(t, [counting]);
  const sc = await tlsBackend(t, pki, counting, (s) => void s.end('via-catalog\n'));
  const fake = new FakeConsul();
  fake.state.services = { counting: [] };
  fake.state.health = { counting: [{ entry: sidecar('n1', sc, 'counting'), status: 'passing' }] };
  const api = await listen(t, http.createServer(fake.handler));
  const [gport, admin] = [await freePort(), await freePort()];
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const running = runGateway(
    [
      '--listen',
      `127.0.0.1:${gport}`,
      '--admin',
      `127.0.0.1:${admin}`,
      '--http-addr',
      `http://127.0.0.1:${api}`,
      '--token',
      'secret-token',
      '--register',
      '--wan-address',
      '198.51.100.4:443',
    ],
    { logger: silentLogger, signal: controller.signal },
  );
  await waitFor(async () => (await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200, {
    what: 'ready',
  });
  t.is(await readLine(await tlsClient(gport, counting, pki.ca)), 'via-catalog');
  const routes = (await (await fetch(`http://127.0.0.1:${admin}/routes`)).json()) as Parameters<
    typeof formatRoutesTable
  >[0];
  t.is(routes.trustDomain, TD);
  t.deepEqual(
    routes.routes.map((r) => r.match),
    [counting],
  );
  t.regex(
    formatRoutesTable(routes),
    new RegExp(`${counting.replace(/\./g, '\\.')}\\s+local_service\\s+dc1\\s+127\\.0\\.0\\.1:${sc}`),
  );
  t.like(fake.puts[0], {
    path: '/v1/agent/service/register',
    body: {
      Kind: 'mesh-gateway',
      Port: gport,
      TaggedAddresses: { wan: { Address: '198.51.100.4', Port: 443 } },
    },
  });
  controller.abort();
  await running;
  t.regex(fake.puts.at(-1)?.path ?? '', /^\/v1\/agent\/service\/deregister\//);
});
