import test from 'ava';
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { createLogger, isMeshError, silentLogger, systemClock } from '@meshfed/core';
import { ManualClock, tempDir } from '@meshfed/testkit';
import {
  CertificateAuthority,
  createCsr,
  defaultCaOptions,
  FileCaStateStorage,
  generateLeafKey,
  MemoryCaStateStorage,
  splitPems,
  spiffeIdOf,
  verifyChain,
} from '../src/index.js';
import {
  basicConstraintsExt,
  CA_KEY_USAGE,
  certPem,
  generateKey,
  keyUsageExt,
  loadPrivateKey,
  newSerial,
  parseCertParts,
  sanExt,
  signCertificate,
  spkiDer,
} from '../src/certs.js';
import * as der from '../src/der.js';
import { CLUSTER, makeCa, openssl, pair, TD, writePem } from './fixtures.js';

const now = () => Date.now();

test('primary and secondary leaves pass `openssl verify` against the root (secondary via its intermediate)', async (t) => {
  const dir = tempDir(t);
  const { primary, secondary, intermediatePem } = await pair();
  const root = writePem(dir, 'root.pem', primary.trustBundlePems());
  const inter = writePem(dir, 'inter.pem', intermediatePem);
  const l1 = await primary.issueLeaf({ kind: 'service', service: 'web' });
  const l2 = await secondary.issueLeaf({ kind: 'service', service: 'api' });
  const srv = await primary.issueLeaf({ kind: 'server', node: 'node1' });
  const gw = await secondary.issueLeaf({ kind: 'mesh-gateway' });

  const leaf1 = writePem(dir, 'l1.pem', splitPems(l1.CertPEM)[0]!);
  const leaf2 = writePem(dir, 'l2.pem', splitPems(l2.CertPEM)[0]!);
  t.is((await openssl(['verify', '-CAfile', root, leaf1])).code, 0);
  t.is((await openssl(['verify', '-CAfile', root, '-untrusted', inter, leaf2])).code, 0);
  t.is(
    (await openssl(['verify', '-CAfile', root, writePem(dir, 'srv.pem', srv.CertPEM)])).code,
    0,
    'server DNS names pass the name constraint',
  );
  const gwLeaf = writePem(dir, 'gw.pem', splitPems(gw.CertPEM)[0]!);
  t.is((await openssl(['verify', '-CAfile', root, '-untrusted', inter, gwLeaf])).code, 0);
  // without the intermediate the secondary's leaf does not verify: the chain really goes through it
  t.not((await openssl(['verify', '-CAfile', root, leaf2])).code, 0);
  // the secondary's CertPEM carries its chain (leaf + intermediate), not the root
  t.is(splitPems(l2.CertPEM).length, 2);
  t.is(splitPems(l1.CertPEM).length, 1);

  t.is(l1.ServiceURI, `spiffe://${TD}/ns/default/dc/dc1/svc/web`);
  t.is(l2.ServiceURI, `spiffe://${TD}/ns/default/dc/dc2/svc/api`);
  t.is(gw.ServiceURI, `spiffe://${TD}/gateway/mesh/dc/dc2`);
  const srvText = (await openssl(['x509', '-noout', '-text', '-in', writePem(dir, 's1.pem', srv.CertPEM)]))
    .out;
  t.regex(srvText, /DNS:server\.dc1\.consul, DNS:node1\.server\.dc1\.consul/);
  t.regex(srvText, new RegExp(`URI:spiffe://${TD}/agent/server/dc/dc1`));
  // lifetime 72 h, EC P-256 key
  t.is(Date.parse(l1.ValidBefore) - Date.parse(l1.ValidAfter), 72 * 3600_000 + 60_000);
  t.is(
    new X509Certificate(splitPems(l1.CertPEM)[0]!).publicKey.asymmetricKeyDetails?.namedCurve,
    'prime256v1',
  );
});

test('`openssl x509 -text` shows the URI SAN, the critical name constraint, and leaf EKU', async (t) => {
  const dir = tempDir(t);
  const { primary, secondary } = await pair();
  const root = (
    await openssl(['x509', '-noout', '-text', '-in', writePem(dir, 'r.pem', primary.trustBundlePems())])
  ).out;
  t.regex(root, new RegExp(`URI:spiffe://${TD}\\n`));
  t.regex(root, /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:[^\n]+\.consul\s+DNS:consul\s+URI:/);
  t.regex(root, /Basic Constraints: critical\s+CA:TRUE/);
  t.regex(root, /Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
  const leaf = await secondary.issueLeaf({
    kind: 'service',
    service: 'api',
    namespace: 'team',
    partition: 'part1',
  });
  const text = (await openssl(['x509', '-noout', '-text', '-in', writePem(dir, 'l.pem', leaf.CertPEM)])).out;
  t.regex(text, new RegExp(`URI:spiffe://${TD}/ap/part1/ns/team/dc/dc2/svc/api`));
  t.regex(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
  t.regex(text, /CA:FALSE/);
});

test('roots response has Consul shape and no private key anywhere in read APIs', async (t) => {
  const { primary } = await pair();
  const roots = primary.rootsResponse();
  t.is(roots.TrustDomain, TD);
  t.is(roots.Roots.length, 1);
  const r = roots.Roots[0]!;
  t.is(r.ID, roots.ActiveRootID);
  t.is(r.ID, new X509Certificate(r.RootCert).fingerprint, 'ID is the SHA-1 fingerprint in colon hex');
  t.regex(r.SigningKeyID, /^([0-9a-f]{2}:){31}[0-9a-f]{2}$/);
  t.true(r.Active);
  t.is(r.PrivateKeyType, 'ec');
  t.is(r.PrivateKeyBits, 256);
  t.is(r.IntermediateCerts, null);
  t.regex(r.NotAfter, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const everything = JSON.stringify([roots, primary.configuration()]);
  t.false(everything.includes('PRIVATE KEY'));
  const cfg = primary.configuration();
  t.is(cfg.Config.LeafCertTTL, '72h0m0s');
  t.is(cfg.Config.CSRMaxPerSecond, 1000);
  t.is(cfg.ClusterID, CLUSTER);
});

test('refusals: foreign CA, expired, not yet valid, other trust domain — each with its code and reason', async (t) => {
  const { primary, secondary } = await pair();
  const bundle = primary.trustBundlePems();
  const leaf = await secondary.issueLeaf({ kind: 'service', service: 'api' });
  const ok = verifyChain([leaf.CertPEM], bundle, { now: now(), trustDomain: TD, kind: 'service' });
  t.like(verifyChain([leaf.CertPEM], bundle, { now: now(), kind: 'mesh-gateway' }), {
    ok: false,
    code: 'MESH_ERR_CA_IDENTITY_DENIED',
  });
  t.true(ok.ok);
  if (ok.ok) t.is(ok.spiffeId, leaf.ServiceURI);

  const foreign = makeCa('dc1', { clusterId: '99999999-2222-3333-4444-555555555555' });
  await foreign.ca.start();
  const fl = await foreign.ca.issueLeaf({ kind: 'service', service: 'api' });
  const r1 = verifyChain([fl.CertPEM], bundle, { now: now() });
  t.like(r1, { ok: false, code: 'MESH_ERR_CA_UNTRUSTED' });

  const day = 24 * 3600_000;
  const r2 = verifyChain([leaf.CertPEM], bundle, { now: Date.parse(leaf.ValidBefore) + 2 * 60_000 });
  t.like(r2, { ok: false, code: 'MESH_ERR_CA_CERT_EXPIRED' });
  if (!r2.ok) t.regex(r2.reason, /expired at/);
  // within the skew allowance it is still accepted
  t.true(verifyChain([leaf.CertPEM], bundle, { now: Date.parse(leaf.ValidBefore) + 30_000 }).ok);
  const r3 = verifyChain([leaf.CertPEM], bundle, { now: now() - day });
  t.like(r3, { ok: false, code: 'MESH_ERR_CA_CERT_NOT_YET_VALID' });

  // a leaf of another trust domain, verified against its own (valid) roots, with our trust domain expected
  const r4 = verifyChain([fl.CertPEM], foreign.ca.trustBundlePems(), { now: now(), trustDomain: TD });
  t.like(r4, { ok: false, code: 'MESH_ERR_CA_TRUST_DOMAIN' });
  if (!r4.ok) t.regex(r4.reason, /99999999/);

  // garbage never throws
  t.like(verifyChain(['not a pem'], bundle, { now: now() }), { ok: false });
  // openssl agrees on expiry
  const dir = tempDir(t);
  const root = writePem(dir, 'root.pem', bundle);
  const chain = splitPems(leaf.CertPEM);
  const args = [
    'verify',
    '-CAfile',
    root,
    '-untrusted',
    writePem(dir, 'i.pem', chain[1]!),
    writePem(dir, 'l.pem', chain[0]!),
  ];
  const expired = await openssl([
    ...args.slice(0, 1),
    '-attime',
    String(Math.floor(Date.parse(leaf.ValidBefore) / 1000) + 3600),
    ...args.slice(1),
  ]);
  t.not(expired.code, 0);
  t.regex(expired.out, /expired/);
});

test('an intermediate outside the root name constraint is rejected (ours and openssl)', async (t) => {
  const dir = tempDir(t);
  const { primary, primaryStorage } = await pair();
  const state = await primaryStorage.load();
  const rootKey = loadPrivateKey(state!.roots[0]!.keyPem!);
  const rootCert = new X509Certificate(primary.trustBundlePems()[0]!);
  const rootSubject = parseCertParts(rootCert.raw).subject;
  const interKey = generateKey('ec', 256);
  const evilTd = 'evil.example';
  const n = Date.now();
  const interDer = signCertificate(
    {
      serial: newSerial(),
      subject: der.name({ cn: 'rogue intermediate' }),
      issuer: rootSubject,
      notBefore: n - 60_000,
      notAfter: n + 3600_000,
      spki: spkiDer(interKey),
      extensions: [
        basicConstraintsExt(true),
        keyUsageExt(CA_KEY_USAGE),
        sanExt({ uris: [`spiffe://${evilTd}`] }),
      ],
    },
    rootKey,
  );
  const leafKey = await generateLeafKey();
  const leafDer = signCertificate(
    {
      serial: newSerial(),
      subject: der.name({ cn: 'web' }),
      issuer: der.name({ cn: 'rogue intermediate' }),
      notBefore: n - 60_000,
      notAfter: n + 3600_000,
      spki: spkiDer(leafKey),
      extensions: [
        basicConstraintsExt(false),
        sanExt({ uris: [`spiffe://${evilTd}/ns/default/dc/dc1/svc/web`] }),
      ],
    },
    interKey,
  );
  const r = verifyChain([certPem(leafDer), certPem(interDer)], primary.trustBundlePems(), { now: n });
  t.like(r, { ok: false, code: 'MESH_ERR_CA_NAME_CONSTRAINT' });
  const o = await openssl([
    'verify',
    '-CAfile',
    writePem(dir, 'root.pem', primary.trustBundlePems()),
    '-untrusted',
    writePem(dir, 'i.pem', certPem(interDer)),
    writePem(dir, 'l.pem', certPem(leafDer)),
  ]);
  t.not(o.code, 0);
  t.regex(o.out, /permitted subtree violation/);

  // the primary refuses to sign such an intermediate in the first place
  const csr = createCsr(interKey, { cn: 'meshfed intermediate CA dc2' }, { uris: [`spiffe://${evilTd}`] });
  const e = await t.throwsAsync(primary.signIntermediateCsr(csr, 'dc2'));
  t.true(isMeshError(e, 'MESH_ERR_CA_TRUST_DOMAIN'));
  // nor one that claims another datacenter than the caller's
  const csr2 = createCsr(interKey, { cn: 'meshfed intermediate CA dc3' }, { uris: [`spiffe://${TD}`] });
  t.true(
    isMeshError(await t.throwsAsync(primary.signIntermediateCsr(csr2, 'dc2')), 'MESH_ERR_CA_IDENTITY_DENIED'),
  );
});

test('CSR intake: signs the allowed identity, refuses one the caller does not own, bad CSRs and other DCs', async (t) => {
  const { primary, secondary } = await pair();
  const key = await generateLeafKey();
  const webUri = `spiffe://${TD}/ns/default/dc/dc2/svc/web`;
  const good = await secondary.signLeafCsr(createCsr(key, { cn: 'web' }, { uris: [webUri] }), {
    kind: 'service',
    service: 'web',
  });
  t.is(good.ServiceURI, webUri);
  t.is(good.PrivateKeyPEM, '');
  t.true(new X509Certificate(splitPems(good.CertPEM)[0]!).checkPrivateKey(key));

  const dbCsr = createCsr(key, { cn: 'db' }, { uris: [`spiffe://${TD}/ns/default/dc/dc2/svc/db`] });
  const e1 = await t.throwsAsync(secondary.signLeafCsr(dbCsr, { kind: 'service', service: 'web' }));
  t.true(isMeshError(e1, 'MESH_ERR_CA_IDENTITY_DENIED'));
  t.regex(e1!.message, /svc\/db.*may only have.*svc\/web/);
  t.is((e1 as { status?: number }).status, 403);

  const srvCsr = createCsr(
    key,
    { cn: 'x' },
    { uris: [`spiffe://${TD}/agent/server/dc/dc1`], dns: ['server.dc1.consul', 'evil.com'] },
  );
  t.true(
    isMeshError(
      await t.throwsAsync(primary.signLeafCsr(srvCsr, { kind: 'server', node: 'n1' })),
      'MESH_ERR_CA_IDENTITY_DENIED',
    ),
  );
  const csrDer = der.pemToDer(createCsr(key, { cn: 'web' }, { uris: [webUri] }));
  csrDer.write('wex', csrDer.indexOf('web'), 'latin1'); // the subject CN changes after signing
  const tampered = der.derToPem(csrDer, 'CERTIFICATE REQUEST');
  t.true(
    isMeshError(
      await t.throwsAsync(secondary.signLeafCsr(tampered, { kind: 'service', service: 'web' })),
      'MESH_ERR_CA_CSR_INVALID',
    ),
  );
  t.true(
    isMeshError(
      await t.throwsAsync(secondary.signLeafCsr('garbage', { kind: 'service', service: 'web' })),
      'MESH_ERR_CA_CSR_INVALID',
    ),
  );
  t.true(
    isMeshError(
      await t.throwsAsync(secondary.issueLeaf({ kind: 'service', service: 'web', datacenter: 'dc1' })),
      'MESH_ERR_CA_IDENTITY_DENIED',
    ),
  );
  t.true(
    isMeshError(
      await t.throwsAsync(secondary.issueLeaf({ kind: 'service', service: 'Web' })),
      'MESH_ERR_CA_IDENTITY_DENIED',
    ),
  );
  // the CA keeps working after each refusal
  t.truthy(await secondary.issueLeaf({ kind: 'service', service: 'web' }));
});

test('signing limiter: over the rate a request gets MESH_ERR_CA_RATE_LIMITED (429) with a retry hint', async (t) => {
  const clock = new ManualClock(Date.now());
  const { ca } = makeCa('dc1', { csrMaxPerSecond: 5 }, clock);
  await ca.start();
  const results = await Promise.allSettled(
    Array.from({ length: 8 }, () => ca.issueLeaf({ kind: 'service', service: 'web' })),
  );
  t.is(results.filter((r) => r.status === 'fulfilled').length, 5);
  const rej = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  t.true(isMeshError(rej.reason, 'MESH_ERR_CA_RATE_LIMITED'));
  t.is(rej.reason.status, 429);
  t.true((rej.reason.details.retryAfterMs as number) > 0);
  clock.advance(1000);
  t.truthy(await ca.issueLeaf({ kind: 'service', service: 'web' }), 'tokens refill with time');
  await ca.close();
});

test('configuration: validated, refused input changes nothing; key type change rotates with cross-sign', async (t) => {
  const { primary, secondary } = await pair();
  const before = JSON.stringify(primary.configuration());
  for (const bad of [
    { Config: { LeafCertTTL: '10m' } },
    { Config: { LeafCertTTL: 'soon' } },
    { Config: { PrivateKeyType: 'dsa' } },
    { Config: { PrivateKeyType: 'ec', PrivateKeyBits: 300 } },
    { Provider: 'vault' },
    'nope',
  ]) {
    const e = await t.throwsAsync(primary.setConfiguration(bad));
    t.true(isMeshError(e, 'MESH_ERR_CA_CONFIG_INVALID'), JSON.stringify(bad));
  }
  t.is(JSON.stringify(primary.configuration()), before);
  t.true(
    isMeshError(await t.throwsAsync(secondary.setConfiguration({ Config: {} })), 'MESH_ERR_CA_NOT_PRIMARY'),
  );

  const changes: string[] = [];
  primary.onChange((w) => changes.push(w));
  await primary.setConfiguration({
    Config: { LeafCertTTL: '24h', PrivateKeyType: 'rsa', PrivateKeyBits: 2048, CSRMaxPerSecond: 50 },
  });
  const cfg = primary.configuration();
  t.is(cfg.Config.LeafCertTTL, '24h0m0s');
  t.is(cfg.Config.PrivateKeyType, 'rsa');
  t.is(cfg.Config.CSRMaxPerSecond, 50);
  const roots = primary.rootsResponse();
  t.is(roots.Roots.length, 2);
  const active = roots.Roots.find((r) => r.Active)!;
  t.is(active.PrivateKeyType, 'rsa');
  t.is(active.IntermediateCerts?.length, 1, 'the new root is cross-signed by the old');
  t.deepEqual(changes, ['roots', 'config']);
  const leaf = await primary.issueLeaf({ kind: 'service', service: 'web' });
  t.is(Date.parse(leaf.ValidBefore) - Date.parse(leaf.ValidAfter), 24 * 3600_000 + 60_000);
});

test('rotation without cross-signing is refused unless forced; operator-provided root', async (t) => {
  const { primary } = await pair();
  const e = await t.throwsAsync(primary.rotateRoot({ skipCrossSign: true }));
  t.true(isMeshError(e, 'MESH_ERR_CA_ROTATION_REFUSED'));
  t.is(primary.rootsResponse().Roots.length, 1);
  await primary.rotateRoot({ skipCrossSign: true, force: true });
  t.is(primary.rootsResponse().Roots.find((r) => r.Active)!.IntermediateCerts, null);

  // operator-provided root made with the openssl CLI
  const dir = tempDir(t);
  const key = join(dir, 'k.pem');
  const crt = join(dir, 'c.pem');
  const mk = await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    key,
    '-out',
    crt,
    '-days',
    '3650',
    '-subj',
    '/CN=Operator Root',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    '-addext',
    `subjectAltName=URI:spiffe://${TD}`,
  ]);
  t.is(mk.code, 0, mk.out);
  await primary.rotateRoot({ rootCertPem: readFileSync(crt, 'utf8'), rootKeyPem: readFileSync(key, 'utf8') });
  const active = primary.rootsResponse().Roots.find((r) => r.Active)!;
  t.is(active.ID, new X509Certificate(readFileSync(crt)).fingerprint);
  const leaf = await primary.issueLeaf({ kind: 'service', service: 'web' });
  const lp = writePem(dir, 'leaf.pem', splitPems(leaf.CertPEM)[0]!);
  t.is((await openssl(['verify', '-CAfile', crt, lp])).code, 0);
  // mismatched key is refused and changes nothing
  const other = generateKey('ec', 256).export({ type: 'pkcs8', format: 'pem' }) as string;
  t.true(
    isMeshError(
      await t.throwsAsync(primary.rotateRoot({ rootCertPem: readFileSync(crt, 'utf8'), rootKeyPem: other })),
      'MESH_ERR_CA_ROTATION_REFUSED',
    ),
  );
  t.is(primary.rootsResponse().ActiveRootID, active.ID);
});

test('old roots retire after 2 × leaf TTL (ManualClock)', async (t) => {
  const clock = new ManualClock(Date.now());
  const { ca } = makeCa('dc1', { leafTtlMs: 3600_000, intermediateTtlMs: 4 * 3600_000 }, clock);
  await ca.start();
  await ca.rotateRoot();
  t.is(ca.rootsResponse().Roots.length, 2);
  await clock.advanceAsync(2 * 3600_000 - 1000);
  t.is(ca.rootsResponse().Roots.length, 2, 'still within 2 × leaf TTL');
  await clock.advanceAsync(2 * 3600_000);
  await ca.pruneRoots();
  t.is(ca.rootsResponse().Roots.length, 1);
  t.true(ca.rootsResponse().Roots[0]!.Active);
  await ca.close();
});

test('secondary: needsIntermediate before install, at half life, and after a primary rotation', async (t) => {
  const clock = new ManualClock(Date.now());
  const p = makeCa('dc1', { leafTtlMs: 3600_000, intermediateTtlMs: 10 * 3600_000 }, clock);
  const s = makeCa('dc2', { leafTtlMs: 3600_000, intermediateTtlMs: 10 * 3600_000 }, clock);
  await p.ca.start();
  await s.ca.start();
  t.true(s.ca.needsIntermediate());
  t.false(s.ca.ready());
  // malformed roots from a peer are refused and change nothing
  const good = p.ca.rootsResponse();
  for (const bad of [
    {},
    null,
    { ...good, Roots: [{ ...good.Roots[0]!, RootCert: 'x' }] },
    { ...good, Roots: [{ ...good.Roots[0]!, Active: false }] },
    { ...good, TrustDomain: 'Bad Domain' },
    { ...good, Roots: [5] },
  ]) {
    const e = await t.throwsAsync(s.ca.applyPrimaryRoots(bad as never));
    t.true(isMeshError(e, 'MESH_ERR_CA_CHAIN_INVALID'), String(e));
  }
  t.is(s.ca.trustDomain, '');
  t.true(
    isMeshError(
      await t.throwsAsync(s.ca.issueLeaf({ kind: 'service', service: 'web' })),
      'MESH_ERR_CA_NOT_INITIALIZED',
    ),
  );
  await s.ca.applyPrimaryRoots(p.ca.rootsResponse());
  t.is(s.ca.trustDomain, TD);
  const csr = await s.ca.createIntermediateCsr();
  const signed = await p.ca.signIntermediateCsr(csr, 'dc2');
  await s.ca.installIntermediate(signed.certPem, signed.rootsResponse);
  t.false(s.ca.needsIntermediate());
  t.true(s.ca.ready());
  clock.jumpWall(5 * 3600_000 + 60_000);
  t.true(s.ca.needsIntermediate(), 'half life passed');
  clock.jumpWall(-(5 * 3600_000 + 60_000));
  await p.ca.rotateRoot();
  await s.ca.applyPrimaryRoots(p.ca.rootsResponse());
  t.true(s.ca.needsIntermediate(), 'not under the new active root');
  // installing a certificate for a different key is refused
  const wrong = await p.ca.signIntermediateCsr(csr, 'dc2');
  await s.ca.createIntermediateCsr();
  t.true(
    isMeshError(
      await t.throwsAsync(s.ca.installIntermediate(wrong.certPem, wrong.rootsResponse)),
      'MESH_ERR_CA_CHAIN_INVALID',
    ),
  );
});

test('state persists in a 0600 file, optionally AES-256-GCM encrypted; a restarted CA keeps its root', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'ca.json');
  const key = Buffer.alloc(32, 7).toString('base64');
  const mk = (enc?: string) =>
    new CertificateAuthority(
      { ...defaultCaOptions, datacenter: 'dc1', primaryDatacenter: 'dc1' },
      {
        logger: silentLogger,
        clock: systemClock,
        storage: new FileCaStateStorage(path, enc === undefined ? {} : { encryptionKey: enc }),
      },
    );
  const a = mk(key);
  await a.start();
  const id = a.rootsResponse().ActiveRootID;
  t.is(statSync(path).mode & 0o777, 0o600);
  const text = readFileSync(path, 'utf8');
  t.false(text.includes('PRIVATE KEY'), 'keys are not readable at rest');
  await a.close();
  const b = mk(key);
  await b.start();
  t.is(b.rootsResponse().ActiveRootID, id);
  t.regex(b.trustDomain, /^[0-9a-f-]{36}\.consul$/);
  const wrongKey = mk(Buffer.alloc(32, 8).toString('base64'));
  t.true(isMeshError(await t.throwsAsync(wrongKey.start()), 'MESH_ERR_CA_STATE'));
  t.true(isMeshError(await t.throwsAsync(mk().start()), 'MESH_ERR_CA_STATE'));
  // plain (unencrypted) mode: owner-only file, keys inside
  const plainPath = join(dir, 'plain.json');
  const c = new CertificateAuthority(
    { ...defaultCaOptions, datacenter: 'dc1', primaryDatacenter: 'dc1' },
    { logger: silentLogger, clock: systemClock, storage: new FileCaStateStorage(plainPath) },
  );
  await c.start();
  t.is(statSync(plainPath).mode & 0o777, 0o600);
  t.true(readFileSync(plainPath, 'utf8').includes('PRIVATE KEY'));
  t.truthy(spiffeIdOf(c.trustBundlePems()[0]!));
  t.truthy(new MemoryCaStateStorage());
});

test('Ed25519 and RSA CA keys: leaves verify with openssl; EC leaf keys regardless of CA type', async (t) => {
  const dir = tempDir(t);
  for (const [type, bits] of [
    ['ed25519', 256],
    ['rsa', 2048],
  ] as const) {
    const { ca } = makeCa('dc1', { privateKeyType: type, privateKeyBits: bits });
    await ca.start();
    const r = ca.rootsResponse().Roots[0]!;
    t.is(r.PrivateKeyType, type);
    const leaf = await ca.issueLeaf({ kind: 'service', service: 'web' });
    const root = writePem(dir, `${type}-root.pem`, ca.trustBundlePems());
    const o = await openssl(['verify', '-CAfile', root, writePem(dir, `${type}-leaf.pem`, leaf.CertPEM)]);
    t.is(o.code, 0, o.out);
    t.is(new X509Certificate(leaf.CertPEM).publicKey.asymmetricKeyType, 'ec');
    await ca.close();
  }
});

test('private keys never reach the logs, whatever the CA does', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'trace', destination: { write: (s: string) => void lines.push(s) } });
  const mk = (dc: string) =>
    new CertificateAuthority(
      { ...defaultCaOptions, datacenter: dc, primaryDatacenter: 'dc1', clusterId: CLUSTER },
      { logger, clock: systemClock, storage: new MemoryCaStateStorage() },
    );
  const p = mk('dc1');
  const s = mk('dc2');
  await p.start();
  await s.start();
  await s.applyPrimaryRoots(p.rootsResponse());
  const csr = await s.createIntermediateCsr();
  const signed = await p.signIntermediateCsr(csr, 'dc2');
  await s.installIntermediate(signed.certPem, signed.rootsResponse);
  await p.rotateRoot();
  await s.issueLeaf({ kind: 'service', service: 'web' });
  await t.throwsAsync(p.rotateRoot({ rootCertPem: p.trustBundlePems()[0]!, rootKeyPem: 'not a key' }));
  t.true(lines.length >= 3, 'lifecycle events were logged');
  t.false(lines.join('').includes('PRIVATE KEY'));
});

test('a CA certificate is not accepted as a leaf; an expired signing certificate signs nothing', async (t) => {
  const clock = new ManualClock(Date.now());
  const ttl = { leafTtlMs: 3600_000, intermediateTtlMs: 4 * 3600_000, rootTtlMs: 5 * 3600_000 };
  const p = makeCa('dc1', ttl, clock);
  const s = makeCa('dc2', ttl, clock);
  await p.ca.start();
  await s.ca.start();
  await s.ca.applyPrimaryRoots(p.ca.rootsResponse());
  const signed = await p.ca.signIntermediateCsr(await s.ca.createIntermediateCsr(), 'dc2');
  await s.ca.installIntermediate(signed.certPem, signed.rootsResponse);
  const bundle = p.ca.trustBundlePems();
  t.like(verifyChain([bundle[0]!], bundle, { now: clock.now() }), {
    ok: false,
    code: 'MESH_ERR_CA_CHAIN_INVALID',
  });
  t.like(verifyChain([signed.certPem], bundle, { now: clock.now() }), {
    ok: false,
    code: 'MESH_ERR_CA_CHAIN_INVALID',
  });
  t.true(verifyChain([signed.certPem], bundle, { now: clock.now(), leafMayBeCa: true }).ok);

  // near the end of the intermediate, leaves are capped at its expiry; past it, nothing is signed
  clock.jumpWall(4 * 3600_000 - 30 * 60_000);
  const late = await s.ca.issueLeaf({ kind: 'service', service: 'web' });
  t.is(Date.parse(late.ValidBefore), Date.parse(new X509Certificate(signed.certPem).validTo));
  clock.jumpWall(31 * 60_000);
  t.true(
    isMeshError(
      await t.throwsAsync(s.ca.issueLeaf({ kind: 'service', service: 'web' })),
      'MESH_ERR_CA_NO_INTERMEDIATE',
    ),
  );
  t.true(s.ca.needsIntermediate());
  clock.jumpWall(3600_000);
  t.true(
    isMeshError(
      await t.throwsAsync(p.ca.issueLeaf({ kind: 'service', service: 'web' })),
      'MESH_ERR_CA_NOT_INITIALIZED',
    ),
  );
  // the fix is a rotation: refused without cross-signing (the old root expired) unless forced
  t.true(isMeshError(await t.throwsAsync(p.ca.rotateRoot()), 'MESH_ERR_CA_ROTATION_REFUSED'));
  await p.ca.rotateRoot({ force: true });
  t.truthy(await p.ca.issueLeaf({ kind: 'service', service: 'web' }));
});

test('a restarted secondary keeps its intermediate and roots from its file and signs at once', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'dc2.json');
  const { ca: primary } = makeCa('dc1');
  await primary.start();
  const mk = () =>
    new CertificateAuthority(
      { ...defaultCaOptions, datacenter: 'dc2', primaryDatacenter: 'dc1' },
      { logger: silentLogger, clock: systemClock, storage: new FileCaStateStorage(path) },
    );
  const a = mk();
  await a.start();
  await a.applyPrimaryRoots(primary.rootsResponse());
  const signed = await primary.signIntermediateCsr(await a.createIntermediateCsr(), 'dc2');
  await a.installIntermediate(signed.certPem, signed.rootsResponse);
  await a.close();
  const b = mk();
  await b.start();
  t.true(b.ready());
  t.false(b.needsIntermediate());
  t.is(b.trustDomain, TD);
  const leaf = await b.issueLeaf({ kind: 'service', service: 'web' });
  t.true(verifyChain([leaf.CertPEM], primary.trustBundlePems(), { now: Date.now(), trustDomain: TD }).ok);
  await b.close();
});
