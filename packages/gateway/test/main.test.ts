import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { isMeshError, silentLogger } from '@meshfed/core';
import { freePort, waitFor } from '@meshfed/testkit';
import { parseGatewayArgs, runGateway } from '../src/index.js';
import { closed, makePki, readLine, tlsBackend, tlsClient } from './fixtures.js';

const A = 'a.main.test';
const B = 'b.main.test';
const mainJs = fileURLToPath(new URL('../src/main.js', import.meta.url));

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

/** main.js as a real process: listen and admin on free ports, static routes, extra flags. */
async function spawnMain(
  routes: string[],
  extra: string[],
  opts: { detached?: boolean } = {},
): Promise<{ child: ChildProcess; listen: number; admin: number; stderr: () => string }> {
  const [listen, admin] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      mainJs,
      '--listen',
      `127.0.0.1:${listen}`,
      '--admin',
      `127.0.0.1:${admin}`,
      ...routes.flatMap((r) => ['--static-route', r]),
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: opts.detached ?? false },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, listen, admin, stderr: () => stderr };
}

test('flags: bad values are clear MeshErrors', (t) => {
  t.like(
    parseGatewayArgs([
      '--listen',
      '127.0.0.1:9443',
      '--static-route',
      'x.test=127.0.0.1:1',
      '--workers',
      '2',
    ]),
    {
      listen: { host: '127.0.0.1', port: 9443 },
      staticRoutes: ['x.test=127.0.0.1:1'],
      workers: 2,
    },
  );
  const e1 = t.throws(() => parseGatewayArgs(['--listen', 'nope']));
  t.true(isMeshError(e1, 'MESH_ERR_CONFIG_INVALID'));
  t.true(
    isMeshError(
      t.throws(() => parseGatewayArgs(['--workers', 'many'])),
      'MESH_ERR_CONFIG_INVALID',
    ),
  );
  t.true(
    isMeshError(
      t.throws(() => parseGatewayArgs(['--bogus'])),
      'MESH_ERR_CONFIG_INVALID',
    ),
  );
});

test('runGateway in process: static routes, admin /ready /routes /metrics, stops on abort', async (t) => {
  const pki = makePki(t, [A]);
  const pa = await tlsBackend(t, pki, A);
  const [listen, admin] = [await freePort(), await freePort()];
  const controller = new AbortController();
  const running = runGateway(
    [
      '--listen',
      `127.0.0.1:${listen}`,
      '--admin',
      `127.0.0.1:${admin}`,
      '--static-route',
      `${A}=127.0.0.1:${pa}`,
    ],
    {
      logger: silentLogger,
      signal: controller.signal,
    },
  );
  t.teardown(() => controller.abort());
  await waitFor(async () => (await get(`http://127.0.0.1:${admin}/ready`)).status === 200, { what: 'ready' });
  const c = await tlsClient(listen, A, pki.ca);
  t.is(await readLine(c), A);
  c.end();
  await closed(c);
  const routes = JSON.parse((await get(`http://127.0.0.1:${admin}/routes`)).text);
  t.deepEqual(routes.routes, [
    { match: A, class: 'static', datacenter: 'dc1', endpoints: [`127.0.0.1:${pa}`] },
  ]);
  const metrics = (await get(`http://127.0.0.1:${admin}/metrics`)).text;
  t.regex(metrics, /gateway_connections_total\{class="static",dc="dc1"\} 1/);
  t.regex(metrics, /gateway_bytes_total\{class="static",dc="dc1",direction="to_client"\} \d+/);
  t.is((await get(`http://127.0.0.1:${admin}/nope`)).status, 404);
  controller.abort();
  await running;
  await t.throwsAsync(tlsClient(listen, A, pki.ca));
});

test('main.js with --workers 2: both workers serve one table, metrics merge, SIGTERM drains and exits 0', async (t) => {
  const pki = makePki(t, [A, B]);
  const pa = await tlsBackend(t, pki, A);
  const pb = await tlsBackend(t, pki, B);
  const { child, listen, admin, stderr } = await spawnMain(
    [`${A}=127.0.0.1:${pa}`, `${B}=127.0.0.1:${pb}`],
    ['--workers', '2'],
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.teardown(() => child.kill('SIGKILL'));
  await waitFor(async () => (await get(`http://127.0.0.1:${admin}/ready`)).status === 200, {
    what: 'workers ready',
    timeoutMs: 20_000,
  });
  const N = 20;
  for (let i = 0; i < N; i++) {
    const sni = i % 2 ? A : B;
    const c = await tlsClient(listen, sni, pki.ca);
    t.is(await readLine(c), sni);
    c.destroy();
  }
  const metrics = (await get(`http://127.0.0.1:${admin}/metrics`)).text;
  t.regex(
    metrics,
    new RegExp(`gateway_connections_total\\{class="static",dc="dc1"\\} ${N}`),
    'counts from both workers add up',
  );
  const held = await tlsClient(listen, A, pki.ca);
  t.is(await readLine(held), A);
  child.kill('SIGTERM');
  await waitFor(
    async () => (await get(`http://127.0.0.1:${admin}/ready`).catch(() => ({ status: 0 }))).status !== 200,
    { what: 'not ready while draining' },
  );
  held.write('still served while draining\n');
  t.is(await readLine(held), 'still served while draining');
  held.end();
  t.is(await exited, 0, stderr());
});

// Regression guard for a reported spin after the drain deadline: a real gateway process with live
// TLS streams that never finish must close them at the deadline and exit, single and multi-worker.
for (const workers of [1, 2]) {
  test(`main.js --workers ${workers}: SIGTERM with streams still open at the drain deadline closes them and exits 0`, async (t) => {
    const pki = makePki(t, [A]);
    const pa = await tlsBackend(t, pki, A);
    // Its own process group: SIGTERM goes to the whole group, as from a shell, systemd or the
    // bench harness (the workers see it too).
    const { child, listen, admin, stderr } = await spawnMain(
      [`${A}=127.0.0.1:${pa}`],
      ['--drain-timeout', '1s', '--workers', String(workers)],
      { detached: true },
    );
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    t.teardown(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    });
    await waitFor(async () => (await get(`http://127.0.0.1:${admin}/ready`)).status === 200, {
      what: 'gateway ready',
      timeoutMs: 20_000,
    });
    const held = [];
    for (let i = 0; i < 10; i++) {
      const c = await tlsClient(listen, A, pki.ca);
      t.is(await readLine(c), A);
      held.push(c);
    }
    const allClosed = Promise.all(held.map((c) => closed(c)));
    process.kill(-child.pid!, 'SIGTERM');
    // Generous bound (deadline 1 s): a spinning process that never exits fails here.
    const code = await Promise.race([
      exited,
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000).unref()),
    ]);
    t.is(code, 0, `process exit after SIGTERM; stderr: ${stderr()}`);
    await allClosed;
    t.true(
      held.every((c) => c.destroyed),
      'every held stream is closed',
    );
  });
}
