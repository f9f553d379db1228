import tls from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import { createLogger, Registry } from '@meshfed/core';
import { tempDir, waitFor } from '@meshfed/testkit';
import { TestCa, rootsOf } from './fixtures/test-ca.js';
import { setIntentions, startApp, startFake, startSidecar } from './fixtures/mesh.js';
import type { MeshProxyOptions } from '../src/index.js';

const TD = '11111111-2222-3333-4444-555555555555.consul';

async function scenario(t: ExecutionContext, options: Partial<MeshProxyOptions> = {}) {
  const dir = tempDir(t);
  const ca = TestCa.create(dir, TD);
  const fake = await startFake(t, 'dc1');
  fake.set('/v1/agent/connect/ca/roots', rootsOf([ca]));
  const app = await startApp(t, 'counting');
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
  });
  const registry = new Registry();
  const b = await startSidecar(t, fake, ca, {
    service: 'counting',
    appPort: app.port,
    options,
    registry,
    logger,
  });
  const dashboard = ca.leaf({ service: 'dashboard' });
  return { fake, ca, b, registry, lines, dashboard };
}

type Outcome = 'allowed' | 'denied';
/** Connect as `leaf`: allowed when the app's greeting arrives, denied when the sidecar closes first. */
function attempt(port: number, leaf: { CertPEM: string; PrivateKeyPEM: string }): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      cert: leaf.CertPEM,
      key: leaf.PrivateKeyPEM,
      rejectUnauthorized: false,
    });
    s.on('data', () => {
      s.destroy();
      resolve('allowed');
    });
    s.on('error', () => resolve('denied'));
    s.on('close', () => resolve('denied'));
  });
}

/** Wait (at most 1 s: the promise of the issue) until connections get `want`. */
async function expectWithinOneSecond(
  port: number,
  leaf: { CertPEM: string; PrivateKeyPEM: string },
  want: Outcome,
  what: string,
) {
  await waitFor(async () => (await attempt(port, leaf)) === want, { timeoutMs: 1000, intervalMs: 20, what });
}

const ix = (
  id: string,
  srcNs: string,
  src: string,
  dstNs: string,
  dst: string,
  action: 'allow' | 'deny',
) => ({
  ID: id,
  SourceNS: srcNs,
  SourceName: src,
  DestinationNS: dstNs,
  DestinationName: dst,
  Action: action,
});

// Consul's table: [srcNs, srcName, dstNs, dstName] per precedence 9..1 for dashboard → counting.
const rows: [number, string, string, string, string][] = [
  [9, 'default', 'dashboard', 'default', 'counting'],
  [8, 'default', '*', 'default', 'counting'],
  [7, '*', '*', 'default', 'counting'],
  [6, 'default', 'dashboard', 'default', '*'],
  [5, 'default', '*', 'default', '*'],
  [4, '*', '*', 'default', '*'],
  [3, 'default', 'dashboard', '*', '*'],
  [2, 'default', '*', '*', '*'],
  [1, '*', '*', '*', '*'],
];

test('intentions matrix: each precedence row beats every lower one, both ways; changes apply within 1 s', async (t) => {
  const { fake, b, dashboard } = await scenario(t);
  for (const [prec, sns, sn, dns, dn] of rows) {
    const lower = rows.filter((r) => r[0] < prec);
    // The row denies, everything below allows (default allow): denied.
    setIntentions(fake, 'counting', [
      ix(`p${prec}`, sns, sn, dns, dn, 'deny'),
      ...lower.map((r) => ix(`p${r[0]}`, r[1], r[2], r[3], r[4], 'allow')),
    ]);
    await expectWithinOneSecond(b.port, dashboard, 'denied', `precedence ${prec} deny over lower allows`);
    // The row allows, everything below denies: allowed.
    setIntentions(fake, 'counting', [
      ix(`p${prec}`, sns, sn, dns, dn, 'allow'),
      ...lower.map((r) => ix(`p${r[0]}`, r[1], r[2], r[3], r[4], 'deny')),
    ]);
    await expectWithinOneSecond(b.port, dashboard, 'allowed', `precedence ${prec} allow over lower denies`);
  }
  t.pass();
});

test('deny beats allow at equal precedence; the denial is logged with source and intention and counted', async (t) => {
  const { fake, b, dashboard, lines, registry } = await scenario(t);
  setIntentions(fake, 'counting', [
    ix('allow-all', 'default', '*', 'default', 'counting', 'allow'),
    ix('deny-all', 'default', '*', 'default', 'counting', 'deny'),
  ]);
  await expectWithinOneSecond(b.port, dashboard, 'denied', 'tie resolved to deny');
  const log = lines.find((l) => l['msg'] === 'inbound connection denied by intentions');
  t.truthy(log);
  t.is(log!['intention'], 'deny-all');
  t.is(log!['source'], `spiffe://${TD}/ns/default/dc/dc1/svc/dashboard`);
  t.regex(registry.render(), /meshfed_proxy_authz_total\{source="dashboard",result="denied"\} [1-9]/);
  // an intention with L7 permissions is a deny at L4
  setIntentions(fake, 'counting', [
    { ...ix('l7', 'default', 'dashboard', 'default', 'counting', 'allow'), Action: '', Permissions: [{}] },
  ]);
  await expectWithinOneSecond(b.port, dashboard, 'denied', 'L7 permissions deny at L4');
});

test('default policy applies when no intention matches: allow, and deny', async (t) => {
  const allow = await scenario(t, { defaultIntentionPolicy: 'allow' });
  t.is(await attempt(allow.b.port, allow.dashboard), 'allowed');
  const deny = await scenario(t, { defaultIntentionPolicy: 'deny' });
  t.is(await attempt(deny.b.port, deny.dashboard), 'denied');
  setIntentions(deny.fake, 'counting', [
    ix('other', 'default', 'billing', 'default', 'counting', 'allow'),
    ix('mine', 'default', 'dashboard', 'default', 'counting', 'allow'),
  ]);
  await expectWithinOneSecond(
    deny.b.port,
    deny.dashboard,
    'allowed',
    'an allow intention opens the default deny',
  );
  setIntentions(deny.fake, 'counting', [ix('other', 'default', 'billing', 'default', 'counting', 'allow')]);
  await expectWithinOneSecond(
    deny.b.port,
    deny.dashboard,
    'denied',
    'an intention for another source does not match',
  );
});

async function openStream(
  port: number,
  leaf: { CertPEM: string; PrivateKeyPEM: string },
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      cert: leaf.CertPEM,
      key: leaf.PrivateKeyPEM,
      rejectUnauthorized: false,
    });
    s.once('data', () => resolve(s));
    s.once('error', reject);
  });
}

test('allow→deny: established connections stay (L4 semantics) unless the cut option is set', async (t) => {
  for (const cut of [false, true]) {
    const { fake, b, dashboard } = await scenario(t, { cutDeniedOnIntentionChange: cut });
    const s = await openStream(b.port, dashboard);
    const closed = new Promise<boolean>((r) => s.once('close', () => r(true)));
    setIntentions(fake, 'counting', [ix('deny', 'default', 'dashboard', 'default', 'counting', 'deny')]);
    await expectWithinOneSecond(b.port, dashboard, 'denied', 'new connections denied');
    if (cut) {
      t.true(await closed, 'the established connection was cut');
    } else {
      const back = await new Promise<string>((r) => {
        s.once('data', (c: Buffer) => r(c.toString()));
        s.write('still-here');
      });
      t.is(back, 'still-here', 'the established connection still flows');
      s.destroy();
    }
  }
});
