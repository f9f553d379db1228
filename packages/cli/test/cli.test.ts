// The meshfed executable, run as a real child process the way an operator runs it.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const bin = fileURLToPath(new URL('../src/bin.js', import.meta.url));

async function meshfed(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      cwd: repo,
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('--help lists the commands and --version prints the version', async (t) => {
  const help = await meshfed(['--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /meshfed validate <files\.\.>/);
  t.regex(help.stdout, /--http-addr/);
  const v = await meshfed(['--version']);
  t.is(v.stdout.trim(), '0.1.0');
  const sub = await meshfed(['config', '--help']);
  t.regex(sub.stdout, /meshfed config print/);
});

test('validate: the samples pass (exit 0); a broken file fails with positioned errors (exit 1)', async (t) => {
  const ok = await meshfed([
    'validate',
    'configs/dev.yaml',
    'configs/dc1.yaml',
    'configs/dc2.yaml',
    'configs/dc3.yaml',
  ]);
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stdout.match(/: valid/g)?.length, 4);
  const bad = await meshfed(['validate', 'packages/config/test/fixtures/broken.yaml']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /broken\.yaml:1:13: datacenter: datacenter name "DC\.1"/);
  t.regex(
    bad.stderr,
    /broken\.yaml:3:1: primary_datacentre: unknown key .*did you mean "primary_datacenter"/,
  );
  t.regex(bad.stderr, /broken\.yaml:5:9: ports\.http: expected an integer/);
  const json = await meshfed(['validate', '--json', 'packages/config/test/fixtures/broken.yaml']);
  t.is(JSON.parse(json.stdout)[0].issues.length, 4);
});

test('config print shows the effective config with env and --set applied; --json is parseable', async (t) => {
  const r = await meshfed(['config', 'print', 'configs/dc2.yaml', '--json', '--set', 'ports.http=9999'], {
    MESHFED_LOG_LEVEL: 'debug',
  });
  t.is(r.code, 0, r.stderr);
  const cfg = JSON.parse(r.stdout);
  t.is(cfg.datacenter, 'dc2');
  t.is(cfg.primary_datacenter, 'dc1');
  t.is(cfg.ports.http, 9999);
  t.is(cfg.log_level, 'debug');
  t.is(cfg.ca.leaf_cert_ttl, '72h0m0s');
  const bad = await meshfed(['config', 'print', 'configs/dc2.yaml', '--set', 'ports.http=x']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /flag --ports\.http: ports\.http: expected an integer/);
});

test('usage errors exit 2 with a hint', async (t) => {
  const r = await meshfed(['frobnicate']);
  t.is(r.code, 2);
  t.regex(r.stderr, /Run with --help/);
  const none = await meshfed([]);
  t.is(none.code, 2);
});

test('completion prints a shell script', async (t) => {
  const r = await meshfed(['completion']);
  t.is(r.code, 0);
  t.regex(r.stdout, /meshfed/);
  t.regex(r.stdout, /complete|compdef/);
});

test('docs/cli.md is generated from the command objects and up to date', async (t) => {
  const { renderCliReference } = await import('../src/reference.js');
  const committed = readFileSync(`${repo}docs/cli.md`, 'utf8');
  t.is(committed, renderCliReference(), 'run `npm run docs:cli` and commit docs/cli.md');
});
