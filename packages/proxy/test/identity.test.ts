import { spawn } from 'node:child_process';
import tls from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import { Registry } from '@meshfed/core';
import { freePort, tempDir, waitFor } from '@meshfed/testkit';
import { TestCa, rootsOf } from './fixtures/test-ca.js';
import { dialApp, setHealth, sidecarEntry, startApp, startFake, startSidecar } from './fixtures/mesh.js';
import { X509Certificate } from 'node:crypto';
import { peerCertDer, spiffeIdFromDer, spiffeIdFromSan, uriSans } from '../src/index.js';

const TD = '11111111-2222-3333-4444-555555555555.consul';

async function inboundScenario(t: ExecutionContext) {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const app = await startApp(t, 'counting');
  const registry = new Registry();
  const b = await startSidecar(t, fake, ca, { service: 'counting', appPort: app.port, registry });
  return { dir, ca, fake, b, registry };
}

/** Connect with a client cert; resolve with the first line the app sent, or the way it failed. */
function tryConnect(port: number, opts: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.includes('\n')) {
        s.destroy();
        resolve(`ok:${buf.trim()}`);
      }
    });
    s.on('error', (e) => resolve(`error:${e.message}`));
    s.on('close', () => resolve(buf ? `ok:${buf.trim()}` : 'closed'));
  });
}

test('identity attacks are refused and counted under their reason', async (t) => {
  const { dir, ca, b, registry } = await inboundScenario(t);
  const other = TestCa.create(dir, TD, 'Other CA');
  const port = b.port;
  const good = ca.leaf({ service: 'dashboard' });
  t.is(
    await tryConnect(port, { cert: good.CertPEM, key: good.PrivateKeyPEM }),
    'ok:counting',
    'a good client gets through',
  );

  const cases: [string, ReturnType<TestCa['leaf']> | undefined, string][] = [
    ['other CA', other.leaf({ service: 'dashboard' }), 'untrusted'],
    ['expired', ca.leaf({ service: 'dashboard', days: -1 }), 'expired'],
    ['wrong trust domain', ca.leaf({ service: 'dashboard', trustDomain: 'evil.consul' }), 'bad_identity'],
    ['not a service', ca.leaf({ service: 'x', uri: `spiffe://${TD}/agent/server/dc/dc1` }), 'bad_identity'],
    ['no client cert', undefined, 'no_client_cert'],
  ];
  for (const [what, leaf, reason] of cases) {
    const before = registry.render();
    const r = await tryConnect(port, leaf ? { cert: leaf.CertPEM, key: leaf.PrivateKeyPEM } : {});
    t.false(r.startsWith('ok:'), `${what} must not reach the app (${r})`);
    await waitFor(
      () =>
        registry
          .render()
          .includes(`meshfed_proxy_tls_handshake_failures_total{listener="inbound",reason="${reason}"}`) &&
        registry.render() !== before,
      { what: `${what} counted as ${reason}`, timeoutMs: 3000 },
    );
    t.pass(`${what}: ${r}`);
  }
});

test('upstream refuses an impostor: a valid certificate of another service answering as counting', async (t) => {
  const { fake, ca } = await inboundScenario(t);
  const impostorApp = await startApp(t, 'impostor');
  // A sidecar with a genuine leaf for "billing" registered in the catalog as a counting instance.
  const imp = await startSidecar(t, fake, ca, { service: 'billing', appPort: impostorApp.port });
  setHealth(fake, 'counting', undefined, [sidecarEntry('counting', imp.port)]);
  const upPort = await freePort();
  const a = await startSidecar(t, fake, ca, {
    service: 'dashboard',
    appPort: 1,
    upstreams: [{ DestinationName: 'counting', LocalBindPort: upPort }],
  });
  await t.throwsAsync(dialApp(upPort), { message: /closed/ });
  t.true(
    a.registry
      .render()
      .includes('meshfed_proxy_tls_handshake_failures_total{listener="upstream",reason="bad_identity"}'),
  );
  t.true(
    a.registry.render().includes('meshfed_proxy_upstream_connect_failures_total{upstream="counting"} 1'),
  );
});

/** Run s_client; stop it once the echo came back (or the server closed, or 10 s passed). */
function sClient(port: number, extra: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-quiet', ...extra], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill(), 10_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('hello-from-openssl')) child.kill();
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out + '\n--stderr--\n' + err);
    });
    child.stdin.write('hello-from-openssl\n');
  });
}

test('openssl s_client with our leaf talks to the inbound listener; without a certificate it cannot', async (t) => {
  const { ca, b } = await inboundScenario(t);
  const files = ca.leafFiles({ service: 'dashboard' });
  const withCert = await sClient(b.port, ['-cert', files.cert, '-key', files.key, '-tls1_3']);
  t.regex(withCert, /^counting\nhello-from-openssl/);
  const without = await sClient(b.port, ['-tls1_3']);
  t.notRegex(without, /^counting/);
  t.regex(without, /certificate required/);
});

test('SAN parsing: URI entries, quoted values, several SPIFFE IDs refused', (t) => {
  t.deepEqual(uriSans('DNS:a.b, URI:spiffe://td.consul/ns/default/dc/dc1/svc/web, IP Address:127.0.0.1'), [
    'spiffe://td.consul/ns/default/dc/dc1/svc/web',
  ]);
  t.deepEqual(uriSans('URI:"spiffe://td.consul/x,y"'), ['spiffe://td.consul/x,y']);
  t.false(
    spiffeIdFromSan(
      'URI:spiffe://a.consul/ns/default/dc/dc1/svc/a, URI:spiffe://a.consul/ns/default/dc/dc1/svc/b',
    ).ok,
  );
  t.false(spiffeIdFromSan(undefined).ok);
  const ok = spiffeIdFromSan('URI:spiffe://a.consul/ns/default/dc/dc1/svc/web');
  t.true(ok.ok && ok.value.kind === 'service' && ok.value.service === 'web');
});

test('peerCertDer reads the peer certificate from the TLS session on both sides, full and resumed', async (t) => {
  // The sidecars' fast path: if a Node/OpenSSL upgrade changed the session encoding, this fails
  // (the proxy would still work, through its slower fallback to Node's certificate accessors).
  const ca = TestCa.create(tempDir(t), TD);
  const server = ca.leaf({ service: 'counting' });
  const client = ca.leaf({ service: 'dashboard' });
  const seen: (Buffer | undefined)[] = [];
  const srv = tls.createServer({
    cert: server.CertPEM,
    key: server.PrivateKeyPEM,
    ca: ca.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
  });
  srv.on('secureConnection', (s) => {
    seen.push(peerCertDer(s));
    s.end('x');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const dial = (session?: Buffer) =>
    new Promise<{ der: Buffer | undefined; reused: boolean; session: Buffer | undefined }>(
      (resolve, reject) => {
        let der: Buffer | undefined;
        let next: Buffer | undefined;
        const c = tls.connect({
          host: '127.0.0.1',
          port,
          cert: client.CertPEM,
          key: client.PrivateKeyPEM,
          ca: ca.rootPem,
          session,
          checkServerIdentity: () => {
            der = peerCertDer(c);
            return undefined;
          },
        });
        c.on('session', (s: Buffer) => (next = s));
        c.on('error', reject);
        c.resume();
        c.on('end', () =>
          resolve({ der: der ?? peerCertDer(c), reused: c.isSessionReused(), session: next }),
        );
      },
    );
  const full = await dial();
  t.false(full.reused);
  t.deepEqual(full.der, new X509Certificate(server.CertPEM).raw, 'client side, during the handshake');
  t.deepEqual(seen[0], new X509Certificate(client.CertPEM).raw, 'server side');
  const again = await dial(full.session);
  t.true(again.reused, 'the second connection resumed');
  t.deepEqual(again.der, new X509Certificate(server.CertPEM).raw, 'client side, resumed');
  t.deepEqual(seen[1], new X509Certificate(client.CertPEM).raw, 'server side, resumed');
  const id = spiffeIdFromDer(seen[0]!);
  t.true(id.ok && id.value.kind === 'service' && id.value.service === 'dashboard');
  t.false(spiffeIdFromDer(Buffer.from('not a certificate')).ok);
});
