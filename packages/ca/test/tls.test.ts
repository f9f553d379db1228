import test from 'ava';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { parseSpiffeId } from '@meshfed/core';
import {
  mtlsClientOptions,
  verifyChain,
  mtlsServerOptions,
  peerIdentity,
  splitPems,
  type IssuedLeaf,
} from '../src/index.js';
import { federate, makeCa, pair, TD } from './fixtures.js';

interface Side {
  leaf: IssuedLeaf;
  bundle: string[];
}

/** A real TLS server on 127.0.0.1 that records each authenticated peer's SPIFFE ID and echoes "ok". */
async function mtlsServer(t: { teardown(fn: () => void): void }, side: Side) {
  const peers: string[] = [];
  const srv = tls.createServer(
    mtlsServerOptions({
      certPem: side.leaf.CertPEM,
      privateKeyPem: side.leaf.PrivateKeyPEM,
      caPems: side.bundle,
    }),
    (sock) => {
      const id = peerIdentity(sock);
      if (id) peers.push(id.uri);
      sock.end('ok');
    },
  );
  srv.on('tlsClientError', () => undefined);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.teardown(() => srv.close());
  const update = (s: Side): void =>
    srv.setSecureContext(
      mtlsServerOptions({ certPem: s.leaf.CertPEM, privateKeyPem: s.leaf.PrivateKeyPEM, caPems: s.bundle }),
    );
  return { port: (srv.address() as AddressInfo).port, peers, update };
}

function connect(
  port: number,
  side: Side,
  expect: string | ((id: ReturnType<typeof parseSpiffeId>) => boolean) = () => true,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const exp =
      typeof expect === 'string'
        ? expect
        : (_id: unknown, uri: string) =>
            (expect as (i: ReturnType<typeof parseSpiffeId>) => boolean)(parseSpiffeId(uri));
    const sock = tls.connect({
      host: '127.0.0.1',
      port,
      ...mtlsClientOptions(
        { certPem: side.leaf.CertPEM, privateKeyPem: side.leaf.PrivateKeyPEM, caPems: side.bundle },
        exp,
      ),
    });
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => (data += d));
    sock.on('end', () =>
      data === 'ok' ? resolve(data) : reject(new Error(`server closed without ok (${data})`)),
    );
    sock.on('error', reject);
  });
}

test('mTLS between a dc1 leaf and a dc2 leaf with the bundle; SPIFFE identities checked both ways', async (t) => {
  const { primary, secondary } = await pair();
  const dc1: Side = {
    leaf: await primary.issueLeaf({ kind: 'service', service: 'web' }),
    bundle: primary.trustBundlePems(),
  };
  const dc2: Side = {
    leaf: await secondary.issueLeaf({ kind: 'service', service: 'api' }),
    bundle: secondary.trustBundlePems(),
  };
  const srv = await mtlsServer(t, dc2);
  t.is(await connect(srv.port, dc1, dc2.leaf.ServiceURI), 'ok');
  t.deepEqual(srv.peers, [`spiffe://${TD}/ns/default/dc/dc1/svc/web`]);
  // the client refuses a server whose SPIFFE ID is not the one it dialled
  const e = await t.throwsAsync(connect(srv.port, dc1, `spiffe://${TD}/ns/default/dc/dc2/svc/db`));
  t.regex(e!.message, /expected .*svc\/db/);
  // a foreign CA's leaf is refused by the server
  const foreign = makeCa('dc1', { clusterId: '99999999-2222-3333-4444-555555555555' });
  await foreign.ca.start();
  const f: Side = {
    leaf: await foreign.ca.issueLeaf({ kind: 'service', service: 'web' }),
    bundle: primary.trustBundlePems(),
  };
  await t.throwsAsync(connect(srv.port, f));
  t.is(srv.peers.length, 1, 'the foreign client was never authenticated');
});

test('rotation: old-root-only and new-root-only peers both accept new leaves (cross-signing)', async (t) => {
  const { primary, secondary } = await pair();
  const oldBundle = primary.trustBundlePems();
  await primary.rotateRoot();
  await federate(primary, secondary); // secondary notices the new root and gets a new intermediate
  const newActive = primary.rootsResponse().Roots.find((r) => r.Active)!;
  const newOnly = [newActive.RootCert];
  t.is(oldBundle.length, 1);

  const web = await primary.issueLeaf({ kind: 'service', service: 'web' });
  const api = await secondary.issueLeaf({ kind: 'service', service: 'api' });
  t.is(splitPems(web.CertPEM).length, 2, 'primary leaf ships with the cross-signed root');
  t.is(splitPems(api.CertPEM).length, 3, 'secondary leaf: leaf + intermediate + cross-signed root');
  // our verifier agrees with OpenSSL: both single-root bundles accept both new leaves
  for (const leaf of [web, api])
    for (const b of [oldBundle, newOnly])
      t.true(verifyChain([leaf.CertPEM], b, { now: Date.now(), trustDomain: TD }).ok);
  const oldPeer = await mtlsServer(t, {
    leaf: await primary.issueLeaf({ kind: 'service', service: 'old' }),
    bundle: oldBundle,
  });
  const newPeer = await mtlsServer(t, {
    leaf: await primary.issueLeaf({ kind: 'service', service: 'new' }),
    bundle: newOnly,
  });
  for (const leaf of [web, api]) {
    // clients trust both roots (the bundle after rotation); servers each trust one
    const side: Side = { leaf, bundle: primary.trustBundlePems() };
    t.is(await connect(oldPeer.port, side), 'ok');
    t.is(await connect(newPeer.port, side), 'ok');
  }
  t.is(oldPeer.peers.length, 2);
  t.is(newPeer.peers.length, 2);

  // without the cross-signed certificate the old-root-only peer refuses (so the test above means something)
  const bare: Side = {
    leaf: { ...web, CertPEM: splitPems(web.CertPEM)[0]! },
    bundle: primary.trustBundlePems(),
  };
  await t.throwsAsync(connect(oldPeer.port, bare));
});

test('a continuous stream of new mTLS connections dc1 → dc2 sees zero failures during a root rotation', async (t) => {
  const { primary, secondary } = await pair();
  const client: Side = {
    leaf: await primary.issueLeaf({ kind: 'service', service: 'web' }),
    bundle: primary.trustBundlePems(),
  };
  let server: Side = {
    leaf: await secondary.issueLeaf({ kind: 'service', service: 'api' }),
    bundle: secondary.trustBundlePems(),
  };
  const srv = await mtlsServer(t, server);

  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const waiters: (() => void)[] = [];
  const loop = (async () => {
    while (running) {
      try {
        await connect(
          srv.port,
          { ...client },
          (id) => id.ok && id.value.kind === 'service' && id.value.service === 'api',
        );
        ok++;
      } catch (err) {
        failures.push(err instanceof Error ? err.message : String(err));
      }
      for (const w of waiters.splice(0)) w();
    }
  })();
  // wait (by event, not by time) until the stream has made `n` more connections
  const more = async (n: number): Promise<void> => {
    const target = ok + failures.length + n;
    while (ok + failures.length < target) await new Promise<void>((r) => waiters.push(r));
  };

  await more(5);
  await primary.rotateRoot();
  await more(5);
  // dc1's client renews first (new leaf under the new root + cross cert) while dc2 still trusts only the old root
  client.leaf = await primary.issueLeaf({ kind: 'service', service: 'web' });
  await more(5);
  client.bundle = primary.trustBundlePems();
  await more(5);
  // dc2 learns the roots, gets a new intermediate, renews its leaf and bundle
  await secondary.applyPrimaryRoots(primary.rootsResponse());
  server = { leaf: server.leaf, bundle: secondary.trustBundlePems() };
  srv.update(server);
  await more(5);
  await federate(primary, secondary);
  server = {
    leaf: await secondary.issueLeaf({ kind: 'service', service: 'api' }),
    bundle: secondary.trustBundlePems(),
  };
  srv.update(server);
  await more(5);
  // the old root retires: peers drop it from the bundle; everything is under the new root
  client.bundle = primary
    .rootsResponse()
    .Roots.filter((r) => r.Active)
    .map((r) => r.RootCert);
  srv.update({ ...server, bundle: client.bundle });
  await more(5);
  running = false;
  await loop;
  t.deepEqual(failures, []);
  t.true(ok >= 35, `${ok} connections`);
});
