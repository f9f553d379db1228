// Shared test setup: a primary (dc1) and a secondary (dc2) CA with the intermediate installed.

import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger, systemClock, type Clock } from '@meshfed/core';
import {
  CertificateAuthority,
  defaultCaOptions,
  MemoryCaStateStorage,
  type CaOptions,
} from '../src/index.js';

export const CLUSTER = '11111111-2222-3333-4444-555555555555';
export const TD = `${CLUSTER}.consul`;

export function makeCa(dc: string, opts: Partial<CaOptions> = {}, clock: Clock = systemClock) {
  const storage = new MemoryCaStateStorage();
  const ca = new CertificateAuthority(
    { ...defaultCaOptions, datacenter: dc, primaryDatacenter: 'dc1', clusterId: CLUSTER, ...opts },
    { logger: silentLogger, clock, storage },
  );
  return { ca, storage };
}

/** Secondary asks the primary for an intermediate, as the federation does over the WAN. */
export async function federate(
  primary: CertificateAuthority,
  secondary: CertificateAuthority,
): Promise<string> {
  await secondary.applyPrimaryRoots(primary.rootsResponse());
  const csr = await secondary.createIntermediateCsr();
  const { certPem, rootsResponse } = await primary.signIntermediateCsr(csr, secondaryDc(secondary));
  await secondary.installIntermediate(certPem, rootsResponse);
  return certPem;
}
const secondaryDc = (ca: CertificateAuthority): string =>
  (ca as unknown as { options: CaOptions }).options.datacenter;

export async function pair(clock: Clock = systemClock) {
  const p = makeCa('dc1', {}, clock);
  const s = makeCa('dc2', {}, clock);
  await p.ca.start();
  await s.ca.start();
  const intermediatePem = await federate(p.ca, s.ca);
  return { primary: p.ca, secondary: s.ca, primaryStorage: p.storage, intermediatePem };
}

export function openssl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('openssl', args, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, out: stdout + stderr });
    });
  });
}

export function writePem(dir: string, name: string, pems: string | string[]): string {
  const p = join(dir, name);
  writeFileSync(p, Array.isArray(pems) ? pems.join('') : pems);
  return p;
}
