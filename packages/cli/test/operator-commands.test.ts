// The operator commands against a real `meshfed server` child process (SQLite, CA, gossip,
// federation listener on free ports), each run as the real executable, with openssl as the judge
// of the certificates it hands out.

import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, waitFor } from '@meshfed/testkit';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const bin = fileURLToPath(new URL('../src/bin.js', import.meta.url));
const run = promisify(execFile);

let server: ChildProcess;
let http: string;
let dir: string;
const gossipKey = Buffer.alloc(32, 7).toString('base64');

async function meshfed(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args, '--http-addr', http], {
      cwd: repo,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfed-cli-'));
  const [httpPort, serverPort, serfPort] = [await freePort(), await freePort(), await freePort()];
  http = `http://127.0.0.1:${httpPort}`;
  const config = join(dir, 'dc1.yaml');
  writeFileSync(
    config,
    [
      'datacenter: dc1',
      'node_name: cli-test',
      `data_dir: ${join(dir, 'data')}`,
      'ports:',
      `  http: ${httpPort}`,
      `  server: ${serverPort}`,
      `  serf_wan: ${serfPort}`,
      'gossip:',
      '  profile: local',
      `  encrypt: ${gossipKey}`,
      'services:',
      '  - name: web',
      '    port: 9999',
      '    tags: [v1]',
      '',
    ].join('\n'),
  );
  server = spawn(process.execPath, [bin, 'server', '--config', config, '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitFor(async () => (await fetch(`${http}/v1/status/leader`).catch(() => null))?.ok === true, {
    timeoutMs: 30_000,
    what: 'the server to answer',
  });
});

test.after.always(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

test('services and catalog nodes list what the config registered, as tables and as JSON', async (t) => {
  const services = await meshfed(['services']);
  t.is(services.code, 0);
  t.regex(services.stdout, /^SERVICE\s+TAGS/m);
  t.regex(services.stdout, /^web\s+v1$/m);
  t.regex(services.stdout, /^web-sidecar-proxy/m);
  const json = JSON.parse((await meshfed(['services', '--json'])).stdout) as Record<string, string[]>;
  t.deepEqual(json['web'], ['v1']);
  const nodes = await meshfed(['catalog', 'nodes']);
  t.regex(nodes.stdout, /cli-test\s+127\.0\.0\.1\s+dc1/);
});

test('intention create/check/get/list/match/delete speak like consul intention', async (t) => {
  t.is((await meshfed(['intention', 'create', '-deny', 'web', 'db'])).code, 0);
  const check = await meshfed(['intention', 'check', 'web', 'db']);
  t.is(check.code, 2, 'denied exits 2');
  t.is(check.stdout.trim(), 'Denied');
  t.is((await meshfed(['intention', 'create', '-allow', 'web', 'db'])).code, 0);
  t.is((await meshfed(['intention', 'check', 'web', 'db'])).stdout.trim(), 'Allowed');
  t.regex((await meshfed(['intention', 'get', 'web', 'db'])).stdout, /web\s+allow\s+db\s+9/);
  t.regex((await meshfed(['intention', 'list'])).stdout, /web\s+allow\s+db/);
  const match = JSON.parse((await meshfed(['intention', 'match', 'db', '--json'])).stdout) as unknown[];
  t.is(match.length, 1);
  t.is((await meshfed(['intention', 'delete', 'web', 'db'])).code, 0);
  t.notRegex((await meshfed(['intention', 'list'])).stdout, /web\s+allow\s+db/);
});

test('config write/read/list/delete take YAML files; a bad file changes nothing', async (t) => {
  const file = join(dir, 'resolver.yaml');
  writeFileSync(
    file,
    'Kind: service-resolver\nName: web\nConnectTimeout: 3s\nFailover:\n  "*":\n    Datacenters: [dc2]\n',
  );
  const w = await meshfed(['config', 'write', file]);
  t.is(w.code, 0, w.stderr);
  const read = JSON.parse(
    (await meshfed(['config', 'read', '--kind', 'service-resolver', '--name', 'web'])).stdout,
  );
  t.deepEqual(read.Failover['*'].Datacenters, ['dc2']);
  t.regex((await meshfed(['config', 'list', '--kind', 'service-resolver'])).stdout, /service-resolver\s+web/);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'Kind: service-resolver\nName: web\nConnectTimeout: [not a duration]\n');
  const refused = await meshfed(['config', 'write', bad]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /ConnectTimeout/);
  const still = JSON.parse(
    (await meshfed(['config', 'read', '--kind', 'service-resolver', '--name', 'web'])).stdout,
  );
  t.is(still.ConnectTimeout, '3s');
  t.is((await meshfed(['config', 'delete', '--kind', 'service-resolver', '--name', 'web'])).code, 0);
  t.is((await meshfed(['config', 'read', '--kind', 'service-resolver', '--name', 'web'])).code, 1);
});

test('ca roots, ca leaf (openssl verifies it) and ca rotate (the bundle then holds both roots)', async (t) => {
  const roots = await meshfed(['ca', 'roots']);
  t.regex(roots.stdout, /^ID\s+NAME\s+KEY\s+ACTIVE\s+NOT AFTER/m);
  t.regex(roots.stdout, /trust domain: [0-9a-f-]+\.consul/);
  const out = join(dir, 'leaf');
  const leaf = await meshfed(['ca', 'leaf', 'web', '--out', out]);
  t.is(leaf.code, 0, leaf.stderr);
  t.is(statSync(join(out, 'key.pem')).mode & 0o777, 0o600);
  const verify = await run('openssl', ['verify', '-CAfile', join(out, 'roots.pem'), join(out, 'leaf.pem')]);
  t.regex(verify.stdout, /OK/);
  const text = (
    await run('openssl', ['x509', '-in', join(out, 'leaf.pem'), '-noout', '-ext', 'subjectAltName'])
  ).stdout;
  t.regex(text, /URI:spiffe:\/\/[0-9a-f-]+\.consul\/ns\/default\/dc\/dc1\/svc\/web/);
  const before = JSON.parse((await meshfed(['ca', 'roots', '--json'])).stdout) as { ActiveRootID: string };
  const rotated = await meshfed(['ca', 'rotate']);
  t.is(rotated.code, 0, rotated.stderr);
  const after = JSON.parse((await meshfed(['ca', 'roots', '--json'])).stdout) as {
    ActiveRootID: string;
    Roots: unknown[];
  };
  t.not(after.ActiveRootID, before.ActiveRootID);
  t.is(after.Roots.length, 2);
  const pem = (await meshfed(['ca', 'roots', '--pem'])).stdout;
  t.is(pem.match(/BEGIN CERTIFICATE/g)?.length, 2);
  t.regex(readFileSync(join(out, 'leaf.pem'), 'utf8'), /BEGIN CERTIFICATE/);
});

test('members -wan, keygen, keyring -list, event and federation status answer from the live server', async (t) => {
  const members = await meshfed(['members', '-wan']);
  t.regex(members.stdout, /cli-test\.dc1\s+127\.0\.0\.1:\d+\s+alive\s+dc1\s+meshfed/);
  const key = (await meshfed(['keygen'])).stdout.trim();
  t.is(Buffer.from(key, 'base64').length, 32);
  // the configured key encrypts the pool; rotate to the new one the way an operator would
  const listed = await meshfed(['keyring', '-list']);
  t.regex(listed.stdout, new RegExp(`${gossipKey.replace(/[+/=]/g, '\\$&')}\\s+1/1\\s+yes`));
  t.is((await meshfed(['keyring', '-install', key])).code, 0);
  t.is((await meshfed(['keyring', '-use', key])).code, 0);
  t.is((await meshfed(['keyring', '-remove', gossipKey])).code, 0);
  const after = (await meshfed(['keyring', '-list'])).stdout;
  t.regex(after, new RegExp(`${key.replace(/[+/=]/g, '\\$&')}\\s+1/1\\s+yes`));
  t.notRegex(after, new RegExp(gossipKey.replace(/[+/=]/g, '\\$&')));
  const status = await meshfed(['federation', 'status', '--json']);
  const body = JSON.parse(status.stdout) as { datacenters: { datacenter: string; role: string }[] };
  t.deepEqual(
    body.datacenters.map((d) => [d.datacenter, d.role]),
    [['dc1', 'primary']],
  );
  const token = await meshfed(['federation', 'token', 'create', '--ttl', '5m']);
  t.regex(token.stdout, /^\S{40,}$/m);
  t.regex(token.stderr, /single use/);
  const id = /token ([0-9a-f]{16}):/.exec(token.stderr)![1]!;
  t.regex((await meshfed(['federation', 'token', 'list'])).stdout, new RegExp(`${id}\\s+valid`));
  const revoke = await meshfed(['federation', 'token', 'revoke', id]);
  t.is(revoke.code, 0, revoke.stderr);
  t.regex(revoke.stdout, /revoked/);
  const listed2 = JSON.parse((await meshfed(['federation', 'token', 'list', '--json'])).stdout) as {
    ID: string;
    State: string;
  }[];
  t.is(listed2.find((r) => r.ID === id)?.State, 'revoked');
  const again = await meshfed(['federation', 'token', 'revoke', id]);
  t.is(again.code, 1);
  t.regex(again.stderr, /only an unused token can be revoked/);
  t.is((await meshfed(['event', 'deploy', 'v2'])).code, 0);
  const joinBad = await meshfed(['join', '127.0.0.1:1', '--token', 'garbage']);
  t.is(joinBad.code, 1);
  t.regex(joinBad.stderr, /primary|token/i);
});
