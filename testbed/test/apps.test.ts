// The demo apps and the process group, as real processes.
import test from 'ava';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { freePort, tempDir, waitFor } from '@meshfed/testkit';
import { ProcessGroup } from '@meshfed/testbed';

const app = (name: string) => fileURLToPath(new URL(`../src/apps/${name}.js`, import.meta.url));

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('dashboard calls counting and shows which DC answered; a dead upstream is a 502 with the reason', async (t) => {
  const dir = tempDir(t);
  const group = new ProcessGroup(dir);
  t.teardown(() => group.stopAll());
  const [cPort, dPort] = [await freePort(), await freePort()];
  group.start({
    name: 'counting',
    command: process.execPath,
    args: [app('counting'), '--port', String(cPort), '--datacenter', 'dc2'],
  });
  group.start({
    name: 'dashboard',
    command: process.execPath,
    args: [app('dashboard'), '--port', String(dPort), '--upstream', `http://127.0.0.1:${cPort}/`],
  });
  await waitFor(() => get(`http://127.0.0.1:${dPort}/health`).then((r) => r.status === 200), {
    what: 'dashboard up',
  });
  await waitFor(() => get(`http://127.0.0.1:${cPort}/health`).then((r) => r.status === 200), {
    what: 'counting up',
  });
  const first = JSON.parse((await get(`http://127.0.0.1:${dPort}/api/count`)).body);
  const second = JSON.parse((await get(`http://127.0.0.1:${dPort}/api/count`)).body);
  t.true(first.ok);
  t.is(first.answer.datacenter, 'dc2');
  t.is(second.answer.count, first.answer.count + 1);
  t.regex((await get(`http://127.0.0.1:${dPort}/`)).body, /dashboard/);

  await group.kill('counting');
  const down = await get(`http://127.0.0.1:${dPort}/api/count`);
  t.is(down.status, 502);
  t.regex(JSON.parse(down.body).error, /ECONNREFUSED/);
  t.deepEqual(group.names(), ['dashboard']);
});
