// CA endpoints with a tiny in-test CA (the real one is wired by the daemon): roots and leaf shapes,
// blocking roots, leaf reissued after a rotation, ACL on the leaf, and the SQLite CaStateStorage.

import test from 'ava';
import { join } from 'node:path';
import { silentLogger } from '@meshfed/core';
import { SqliteStore } from '@meshfed/store';
import { tempDir } from '@meshfed/testkit';
import {
  SqliteCaStateStorage,
  type CaRootsResponse,
  type IssuedLeaf,
  type LeafIdentity,
  type ServerCa,
} from '../src/index.js';
import { startServer, call } from './helpers.js';

class FakeCa implements ServerCa {
  trustDomain = '11111111-2222-3333-4444-555555555555.consul';
  root = 1;
  serial = 0;
  private listeners = new Set<(w: 'roots' | 'intermediate' | 'config') => void>();
  ready(): boolean {
    return true;
  }
  rootsResponse(): CaRootsResponse {
    return {
      ActiveRootID: `root-${this.root}`,
      TrustDomain: this.trustDomain,
      Roots: [
        {
          ID: `root-${this.root}`,
          Name: 'test root',
          SerialNumber: this.root,
          SigningKeyID: '',
          ExternalTrustDomain: this.trustDomain,
          NotBefore: '',
          NotAfter: '',
          RootCert: `PEM ${this.root}`,
          IntermediateCerts: null,
          Active: true,
          PrivateKeyType: 'ec',
          PrivateKeyBits: 256,
          CreateIndex: 1,
          ModifyIndex: 1,
        },
      ],
    };
  }
  issueLeaf(id: LeafIdentity): Promise<IssuedLeaf> {
    const service = id.kind === 'service' ? id.service : 'x';
    this.serial++;
    return Promise.resolve({
      SerialNumber: String(this.serial),
      CertPEM: `leaf ${service} under root-${this.root}`,
      PrivateKeyPEM: 'KEY',
      Service: service,
      ServiceURI: `spiffe://${this.trustDomain}/ns/default/dc/dc1/svc/${service}`,
      ValidAfter: new Date(Date.now() - 1000).toISOString(),
      ValidBefore: new Date(Date.now() + 72 * 3600_000).toISOString(),
      CreateIndex: 1,
      ModifyIndex: 1,
    });
  }
  configuration(): unknown {
    return { Provider: 'consul', Config: { LeafCertTTL: '72h' } };
  }
  setConfiguration(): Promise<void> {
    return Promise.resolve();
  }
  onChange(l: (w: 'roots' | 'intermediate' | 'config') => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  rotate(): void {
    this.root++;
    for (const l of this.listeners) l('roots');
  }
}

test('roots and leaf endpoints: shapes, blocking wake on rotation, reissue under the new root', async (t) => {
  const ca = new FakeCa();
  const srv = await startServer(t, {}, { ca });
  const base = srv.httpAddress();
  const roots = await call(base, 'GET', '/v1/connect/ca/roots');
  t.is((roots.json as CaRootsResponse).ActiveRootID, 'root-1');
  t.deepEqual((await call(base, 'GET', '/v1/agent/connect/ca/roots')).json, roots.json);
  const leaf = await call(base, 'GET', '/v1/agent/connect/ca/leaf/web');
  t.is(leaf.status, 200, leaf.text);
  t.is((leaf.json as IssuedLeaf).CertPEM, 'leaf web under root-1');
  const again = await call(base, 'GET', '/v1/agent/connect/ca/leaf/web');
  t.is(
    (again.json as IssuedLeaf).SerialNumber,
    (leaf.json as IssuedLeaf).SerialNumber,
    'cached, not reissued',
  );

  const rootsWait = call(
    base,
    'GET',
    `/v1/connect/ca/roots?index=${roots.headers['x-consul-index']}&wait=20s`,
  );
  const leafWait = call(
    base,
    'GET',
    `/v1/agent/connect/ca/leaf/web?index=${leaf.headers['x-consul-index']}&wait=20s`,
  );
  ca.rotate();
  t.is(((await rootsWait).json as CaRootsResponse).ActiveRootID, 'root-2');
  const newLeaf = (await leafWait).json as IssuedLeaf;
  t.is(newLeaf.CertPEM, 'leaf web under root-2');
  t.deepEqual((await call(base, 'GET', '/v1/connect/ca/configuration')).json, ca.configuration());
});

test('the leaf endpoint needs the management token when ACLs are on', async (t) => {
  const srv = await startServer(t, { acl: { enabled: true, managementToken: 'tok' } }, { ca: new FakeCa() });
  const base = srv.httpAddress();
  t.is((await call(base, 'GET', '/v1/agent/connect/ca/leaf/web')).status, 403);
  t.is(
    (await call(base, 'GET', '/v1/agent/connect/ca/leaf/web', undefined, { 'x-consul-token': 'tok' })).status,
    200,
  );
  t.is((await call(base, 'GET', '/v1/connect/ca/roots')).status, 200);
});

test('SqliteCaStateStorage keeps the CA state across reopening', async (t) => {
  const path = join(tempDir(t), 'state.db');
  const a = new SqliteStore({ path }, { logger: silentLogger });
  await new SqliteCaStateStorage(a).save({ roots: ['r1'], key: 'secret' });
  a.close();
  const b = new SqliteStore({ path }, { logger: silentLogger });
  t.teardown(() => b.close());
  t.deepEqual(await new SqliteCaStateStorage(b).load(), { roots: ['r1'], key: 'secret' });
});

test('ACL default_policy deny: reads need a token, the agent token may read and register but not write intentions; CA roots stay public', async (t) => {
  const srv = await startServer(
    t,
    {
      acl: { enabled: true, managementToken: 'mgmt-token', agentToken: 'agent-token', defaultPolicy: 'deny' },
    },
    { ca: new FakeCa() },
  );
  const base = srv.httpAddress();
  const anon = await call(base, 'GET', '/v1/catalog/services');
  t.is(anon.status, 403);
  t.regex(anon.text, /needs a token/);
  t.is(
    (await call(base, 'GET', '/v1/health/service/web', undefined, { 'x-consul-token': 'wrong' })).status,
    403,
  );
  t.is((await call(base, 'GET', '/v1/agent/connect/ca/roots')).status, 200, 'the trust bundle is public');
  const agent = { 'x-consul-token': 'agent-token' };
  t.is((await call(base, 'PUT', '/v1/agent/service/register', { Name: 'web', Port: 80 }, agent)).status, 200);
  t.deepEqual(
    Object.keys((await call(base, 'GET', '/v1/catalog/services', undefined, agent)).json as object).sort(),
    ['consul', 'web'],
  );
  const intention = await call(
    base,
    'PUT',
    '/v1/connect/intentions/exact?source=web&destination=db',
    { Action: 'deny' },
    agent,
  );
  t.is(intention.status, 403, 'the agent token cannot change who may talk to whom');
  t.deepEqual(
    (await call(base, 'GET', '/v1/connect/intentions', undefined, { authorization: 'Bearer mgmt-token' }))
      .json,
    [],
  );
  t.is(
    (
      await call(
        base,
        'PUT',
        '/v1/connect/intentions/exact?source=web&destination=db',
        { Action: 'deny' },
        { 'x-consul-token': 'mgmt-token' },
      )
    ).status,
    200,
  );
});
