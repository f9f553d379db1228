import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { effectiveConfigYaml, loadConfig, renderConfigReference } from '@meshfed/config';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const fixtures = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));

test('defaults alone make a complete config, with derived values filled in', (t) => {
  const r = loadConfig({});
  t.true(r.ok);
  if (!r.ok) return;
  t.is(r.config.datacenter, 'dc1');
  t.is(r.config.primary_datacenter, 'dc1');
  t.is(r.config.ports.http, 8500);
  t.is(r.config.ca.leaf_cert_ttl, 72 * 3600e3);
  t.is(r.config.advertise_addr, '127.0.0.1');
  t.truthy(r.config.node_name);
  t.true(Object.isFrozen(r.config.ports));
});

test('every sample in configs/ validates', (t) => {
  const files = readdirSync(`${repo}configs`).filter((f) => f.endsWith('.yaml'));
  t.true(files.length >= 4);
  for (const f of files) {
    const r = loadConfig({ files: [`${repo}configs/${f}`] });
    t.true(r.ok, `${f}: ${r.ok ? '' : JSON.stringify(r.issues)}`);
  }
});

test('a typo, a wrong type and a bad DC name give precise errors with line and column', (t) => {
  const file = `${fixtures}broken.yaml`;
  const r = loadConfig({ files: [file] });
  t.false(r.ok);
  if (r.ok) return;
  const byKey = Object.fromEntries(r.issues.map((i) => [i.key, i]));
  t.is(r.issues.length, 4);
  t.is(byKey['datacenter']!.where, `${file}:1:13`);
  t.regex(byKey['datacenter']!.message, /datacenter name "DC\.1" contains uppercase "D"/);
  t.is(byKey['primary_datacentre']!.where, `${file}:3:1`);
  t.regex(
    byKey['primary_datacentre']!.message,
    /unknown key "primary_datacentre" \(did you mean "primary_datacenter"\?\)/,
  );
  t.is(byKey['ports.http']!.where, `${file}:5:9`);
  t.is(byKey['ports.http']!.message, 'expected an integer 0-65535; found the string "eighty"');
  t.is(byKey['gossip.profile']!.where, `${file}:7:12`);
  t.regex(byKey['gossip.profile']!.message, /expected one of wan, lan, local; found the string "wna"/);
});

test('YAML syntax errors and duplicate keys point at the line', (t) => {
  const r = loadConfig({ sources: [['x.yaml', 'datacenter: dc1\ndatacenter: dc2\n']] });
  t.false(r.ok);
  if (!r.ok)
    t.regex(`${r.issues[0]!.where} ${r.issues[0]!.message}`, /x\.yaml:2:1 .*unique|Map keys must be unique/);
  const r2 = loadConfig({ sources: [['y.yaml', 'ports: [1, 2\n']] });
  t.false(r2.ok);
  if (!r2.ok) t.regex(r2.issues[0]!.where, /^y\.yaml:\d+:\d+$/);
  const r3 = loadConfig({ files: ['/nonexistent/meshfed.yaml'] });
  t.false(r3.ok);
  if (!r3.ok) t.regex(r3.issues[0]!.message, /cannot read the file: ENOENT/);
});

test('env vars override the file, flags override env, and their errors name the source', (t) => {
  const src: [string, string] = ['a.yaml', 'datacenter: dc1\nports:\n  http: 8500\n'];
  const r = loadConfig({
    sources: [src],
    env: { MESHFED_PORTS_HTTP: '8600', MESHFED_DATACENTER: 'dc7', MESHFED_GOSSIP_JOIN: 'a:1, b:2' },
    flags: { 'ports.http': '8700' },
  });
  t.true(r.ok);
  if (!r.ok) return;
  t.is(r.config.ports.http, 8700);
  t.is(r.config.datacenter, 'dc7');
  t.deepEqual(r.config.gossip.join, ['a:1', 'b:2']);
  const bad = loadConfig({
    sources: [src],
    env: { MESHFED_PORTS_SERVER: 'x' },
    flags: { 'acl.enabled': 'maybe', nope: '1' },
  });
  t.false(bad.ok);
  if (bad.ok) return;
  const text = bad.issues.map((i) => `${i.where}|${i.key}|${i.message}`).sort();
  t.deepEqual(text, [
    'environment variable MESHFED_PORTS_SERVER|ports.server|expected an integer 0-65535; found the string "x"',
    'flag --acl.enabled|acl.enabled|expected true or false; found the string "maybe"',
    'flag --nope|nope|no such configuration key',
  ]);
});

test('rules across keys: duplicate service IDs, checks, exposed API without TLS, bad gossip key', (t) => {
  const yaml = [
    'client_addr: 0.0.0.0',
    'gossip:',
    '  encrypt: not-base64!',
    'services:',
    '  - name: web',
    '    port: 1',
    '    check: { tcp: "127.0.0.1:1", http: "http://x" }',
    '  - name: web',
    '    port: 2',
  ].join('\n');
  const r = loadConfig({ sources: [['c.yaml', yaml]] });
  t.false(r.ok);
  if (r.ok) return;
  const keys = r.issues.map((i) => i.key).sort();
  t.deepEqual(keys, ['client_addr', 'gossip.encrypt', 'services[0].check', 'services[1].id']);
  const dup = r.issues.find((i) => i.key === 'services[1].id')!;
  t.is(dup.where, 'c.yaml:8:5');
});

test('secrets never appear in the printed effective config', (t) => {
  const r = loadConfig({
    sources: [['s.yaml', 'acl:\n  enabled: true\n  tokens:\n    management: s3cr3t-token\n']],
  });
  t.true(r.ok);
  if (!r.ok) return;
  const printed = effectiveConfigYaml(r.config);
  t.false(printed.includes('s3cr3t-token'));
  t.regex(printed, /management: "\[hidden\]"/);
  t.regex(printed, /leaf_cert_ttl: 72h0m0s/);
});

test('docs/configuration.md is generated from the schema and up to date', (t) => {
  const committed = readFileSync(`${repo}docs/configuration.md`, 'utf8');
  t.is(committed, renderConfigReference(), 'run `npm run docs:config` after changing the schema');
});
