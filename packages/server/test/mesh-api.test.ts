// packages/client's MeshApi (what the CLI and gateway use) against the real server, including a
// blocking watch through ApiClient.watch().

import test from 'ava';
import { ApiClient, MeshApi, type ServiceEntry } from '@meshfed/client';
import { startServer } from './helpers.js';

test('MeshApi round-trips registrations, intentions and config entries; watch() sees a change', async (t) => {
  const srv = await startServer(t);
  const client = new ApiClient({ address: srv.httpAddress() });
  t.teardown(() => client.close());
  const api = new MeshApi(client);
  await api.agentRegister({ Name: 'counting', Port: 9003, Connect: { SidecarService: {} } });
  const health = await api.healthConnect('counting');
  t.is(health.body[0]?.Service.Proxy?.DestinationServiceName, 'counting');
  t.true(health.index >= 1);
  t.true(health.knownLeader);
  await api.intentionUpsert('dashboard', 'counting', { Action: 'allow' });
  t.deepEqual((await api.intentionCheck('dashboard', 'counting')).body, { Allowed: true });
  t.is((await api.configWrite({ Kind: 'service-defaults', Name: 'counting', Protocol: 'http' })).body, true);
  t.is((await api.configRead('service-defaults', 'counting')).body['Protocol'], 'http');
  t.deepEqual((await api.datacenters()).body, ['dc1']);
  const err = await t.throwsAsync(api.configWrite({ Kind: 'service-defaults', Name: 'Counting' }));
  t.is((err as { code?: string }).code, 'MESH_ERR_API_BAD_REQUEST');

  const ac = new AbortController();
  const seen: number[] = [];
  const done = client.watch<ServiceEntry[]>(
    '/v1/health/service/counting',
    (body) => {
      seen.push(body[0]?.Service.Port ?? 0);
      if (seen.length === 1) void api.agentRegister({ Name: 'counting', Port: 9004 });
      else ac.abort();
    },
    { signal: ac.signal },
  );
  await done;
  t.deepEqual(seen, [9003, 9004]);
});
