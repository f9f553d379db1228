// CA micro-benchmark: leaf issuance (CSR verify + sign), key generation and chain verification,
// each next to a peer measured in the same run (the openssl CLI, OpenSSL's own `speed`, node-forge
// for RSA). A program, not a test: `npm run build && npm run bench -w @meshfed/ca`.

import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { silentLogger, systemClock } from '@meshfed/core';
import {
  CertificateAuthority,
  createCsr,
  defaultCaOptions,
  generateLeafKey,
  MemoryCaStateStorage,
  splitPems,
  verifyChain,
  type LeafIdentity,
} from '../src/index.js';

const N = Number(process.env['BENCH_N'] ?? 2000);
const CLI_N = Number(process.env['BENCH_CLI_N'] ?? 40);
const TD_CLUSTER = '11111111-2222-3333-4444-555555555555';

interface Row {
  op: string;
  ours: number;
  oursCpu?: number | undefined;
  peer: string;
  theirs: number | undefined;
}
const rows: Row[] = [];

/** ops per CPU-second of this process (all threads) for each measured wall rate: the fair figure
 * on a shared, loaded machine. Keyed by the wall rate returned. */
const cpuOf = new Map<number, number>();
/** ops per wall second (median of 3 rounds; the machine is shared and noisy). */
async function rounds3(n: number, body: () => Promise<void>): Promise<number> {
  const rs: { wall: number; cpu: number }[] = [];
  for (let r = 0; r < 3; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await body();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    rs.push({ wall: (n * 1000) / wall, cpu: (n * 1e6) / (c.user + c.system) });
  }
  rs.sort((a, b) => a.wall - b.wall);
  cpuOf.set(rs[1]!.wall, rs[1]!.cpu);
  return rs[1]!.wall;
}
function rate(n: number, fn: (i: number) => unknown): Promise<number> {
  return rounds3(n, async () => {
    for (let i = 0; i < n; i++) await fn(i);
  });
}
function rateConcurrent(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  return rounds3(n, async () => {
    for (let i = 0; i < n; i += width)
      await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, j) => fn(i + j)));
  });
}

function mkCa(dc: string, extra: Partial<typeof defaultCaOptions> = {}) {
  return new CertificateAuthority(
    {
      ...defaultCaOptions,
      datacenter: dc,
      primaryDatacenter: 'dc1',
      clusterId: TD_CLUSTER,
      csrMaxPerSecond: 0,
      ...extra,
    },
    { logger: silentLogger, clock: systemClock, storage: new MemoryCaStateStorage() },
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ca-bench-'));
  try {
    const primary = mkCa('dc1');
    const secondary = mkCa('dc2');
    await primary.start();
    await secondary.start();
    await secondary.applyPrimaryRoots(primary.rootsResponse());
    const icsr = await secondary.createIntermediateCsr();
    const signed = await primary.signIntermediateCsr(icsr, 'dc2');
    await secondary.installIntermediate(signed.certPem, signed.rootsResponse);
    const td = primary.trustDomain;
    const id: LeafIdentity = { kind: 'service', service: 'web' };
    const key = await generateLeafKey();
    const csr = createCsr(key, { cn: 'web' }, { uris: [`spiffe://${td}/ns/default/dc/dc2/svc/web`] });

    // --- leaves
    const seq = await rate(N, () => secondary.signLeafCsr(csr, id));
    const conc = await rateConcurrent(N, 64, () => secondary.signLeafCsr(csr, id));
    const withKey = await rate(Math.min(N, 1000), () => secondary.issueLeaf(id));

    // openssl CLI: one process per leaf (x509 -req with the same extensions)
    const st = await (async () => {
      const leaf = await secondary.issueLeaf(id);
      return leaf;
    })();
    const interPem = splitPems(st.CertPEM)[1]!;
    writeFileSync(join(dir, 'inter.pem'), interPem);
    // the intermediate's key: take it from the CA's stored state (bench only)
    const state = await (
      secondary as unknown as { deps: { storage: MemoryCaStateStorage } }
    ).deps.storage.load();
    writeFileSync(join(dir, 'inter.key'), state!.intermediate!.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'leaf.csr'), csr);
    writeFileSync(
      join(dir, 'ext.cnf'),
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment,dataEncipherment,keyAgreement\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://${td}/ns/default/dc/dc2/svc/web\n`,
    );
    const cliLeaf = await rate(CLI_N, () =>
      execFileSync(
        'openssl',
        [
          'x509',
          '-req',
          '-in',
          join(dir, 'leaf.csr'),
          '-CA',
          join(dir, 'inter.pem'),
          '-CAkey',
          join(dir, 'inter.key'),
          '-CAcreateserial',
          '-days',
          '3',
          '-extfile',
          join(dir, 'ext.cnf'),
          '-out',
          join(dir, 'cli-leaf.pem'),
        ],
        { stdio: 'pipe' },
      ),
    );
    rows.push({
      op: 'EC P-256 leaf from CSR (verify + sign), sequential',
      ours: seq,
      oursCpu: cpuOf.get(seq),
      peer: 'openssl x509 -req (CLI, per process)',
      theirs: cliLeaf,
    });
    rows.push({
      op: 'EC P-256 leaf from CSR, 64 concurrent',
      ours: conc,
      oursCpu: cpuOf.get(conc),
      peer: '',
      theirs: undefined,
    });
    rows.push({
      op: 'EC P-256 leaf incl. key generation (issueLeaf)',
      ours: withKey,
      oursCpu: cpuOf.get(withKey),
      peer: '',
      theirs: undefined,
    });

    // raw OpenSSL ECDSA P-256 sign/s (same library Node uses): the ceiling for any leaf signer
    let speedSign: number | undefined;
    try {
      const out = execFileSync('openssl', ['speed', '-seconds', '1', 'ecdsap256'], {
        stdio: 'pipe',
      }).toString();
      const m = /256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)/.exec(out);
      if (m) speedSign = Number(m[1]);
    } catch {
      speedSign = undefined;
    }
    rows.push({
      op: 'EC P-256 leaf from CSR, sequential (vs raw sign)',
      ours: seq,
      oursCpu: cpuOf.get(seq),
      peer: 'openssl speed ecdsap256 (raw sign only: the ceiling)',
      theirs: speedSign,
    });

    // --- key generation
    const kg = await rate(N, () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }));
    const kgc = await rateConcurrent(N, 64, () => generateLeafKey());
    const cliKg = await rate(CLI_N, () =>
      execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'], {
        stdio: 'pipe',
      }),
    );
    rows.push({
      op: 'EC P-256 key generation, sync',
      ours: kg,
      oursCpu: cpuOf.get(kg),
      peer: 'openssl genpkey (CLI)',
      theirs: cliKg,
    });
    rows.push({
      op: 'EC P-256 key generation, async 64 concurrent',
      ours: kgc,
      oursCpu: cpuOf.get(kgc),
      peer: '',
      theirs: undefined,
    });

    // --- chain verification (leaf ← intermediate ← root)
    const bundle = primary.trustBundlePems();
    const leafPem = splitPems(st.CertPEM)[0]!;
    writeFileSync(join(dir, 'root.pem'), bundle.join(''));
    writeFileSync(join(dir, 'leaf.pem'), leafPem);
    const now = Date.now();
    // cold: a leaf never seen before each time (the intermediate ← root link is cached, as in a sidecar)
    const fresh: string[] = [];
    for (let i = 0; i < 3 * N; i++) fresh.push((await secondary.issueLeaf(id)).CertPEM);
    let k = 0;
    const vrCold = await rate(N, () => {
      if (!verifyChain([fresh[k++]!], bundle, { now, trustDomain: td }).ok) throw new Error('verify failed');
    });
    // warm: the same chain again (parsed certificates and signature checks cached)
    const vr = await rate(N, () => {
      if (!verifyChain([st.CertPEM], bundle, { now, trustDomain: td }).ok) throw new Error('verify failed');
    });
    const cliV = await rate(CLI_N, () =>
      execFileSync(
        'openssl',
        [
          'verify',
          '-CAfile',
          join(dir, 'root.pem'),
          '-untrusted',
          join(dir, 'inter.pem'),
          join(dir, 'leaf.pem'),
        ],
        { stdio: 'pipe' },
      ),
    );
    rows.push({
      op: 'chain verify leaf←inter←root, new leaf each time',
      ours: vrCold,
      oursCpu: cpuOf.get(vrCold),
      peer: 'openssl verify (CLI)',
      theirs: cliV,
    });
    rows.push({
      op: 'chain verify, same chain again (cached)',
      ours: vr,
      oursCpu: cpuOf.get(vr),
      peer: 'openssl verify (CLI)',
      theirs: cliV,
    });

    // --- RSA-2048 CA: our signer vs node-forge (pure-JS RSA signing)
    const rsa = mkCa('dc1', { privateKeyType: 'rsa', privateKeyBits: 2048 });
    await rsa.start();
    const rsaCsr = createCsr(key, { cn: 'web' }, { uris: [`spiffe://${td}/ns/default/dc/dc1/svc/web`] });
    const rsaOurs = await rate(Math.min(N, 500), () => rsa.signLeafCsr(rsaCsr, id));
    const fk = forge.pki.rsa.generateKeyPair({ bits: 2048 });
    const fcaCert = forge.pki.createCertificate();
    fcaCert.publicKey = fk.publicKey;
    fcaCert.setSubject([{ name: 'commonName', value: 'forge CA' }]);
    fcaCert.setIssuer([{ name: 'commonName', value: 'forge CA' }]);
    const leafKeys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
    const forgeN = Math.min(50, N);
    const forgeRate = await rate(forgeN, (i) => {
      const c = forge.pki.createCertificate();
      c.publicKey = leafKeys.publicKey;
      c.serialNumber = (i + 1).toString(16).padStart(2, '0');
      c.validity.notBefore = new Date();
      c.validity.notAfter = new Date(Date.now() + 72 * 3600_000);
      c.setSubject([{ name: 'commonName', value: 'web' }]);
      c.setIssuer(fcaCert.subject.attributes);
      c.setExtensions([
        { name: 'basicConstraints', cA: false },
        { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
        {
          name: 'subjectAltName',
          altNames: [{ type: 6, value: `spiffe://${td}/ns/default/dc/dc1/svc/web` }],
        },
      ]);
      c.sign(fk.privateKey, forge.md.sha256.create());
      forge.pki.certificateToPem(c);
    });
    rows.push({
      op: 'RSA-2048 CA signs a leaf',
      ours: rsaOurs,
      oursCpu: cpuOf.get(rsaOurs),
      peer: 'node-forge (pure-JS RSA)',
      theirs: forgeRate,
    });

    const fmt = (n: number | undefined): string =>
      n === undefined ? '—' : n >= 100 ? n.toFixed(0) : n.toFixed(1);
    console.log(
      `# meshfed CA bench — ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, node ${process.version}, ${execFileSync('openssl', ['version']).toString().trim()}`,
    );
    console.log(
      `# N=${N} (CLI N=${CLI_N}), medians of 3 rounds, ops/s (higher is better), load average at end ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}\n`,
    );
    console.log('| operation | meshfed ops/s | meshfed ops/CPU-s | peer | peer ops/s | ratio (wall) |');
    console.log('| --- | ---: | ---: | --- | ---: | ---: |');
    for (const r of rows)
      console.log(
        `| ${r.op} | ${fmt(r.ours)} | ${fmt(r.oursCpu)} | ${r.peer || '—'} | ${fmt(r.theirs)} | ${r.theirs ? (r.ours / r.theirs).toFixed(2) + '×' : '—'} |`,
      );
    await primary.close();
    await secondary.close();
    await rsa.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
