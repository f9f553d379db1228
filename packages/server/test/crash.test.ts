// Durability: a server in a child process takes a stream of acknowledged writes and is SIGKILLed
// mid-stream. After a restart on the same data dir every acknowledged write is there and the index
// is never lower than the highest one a client was served.

import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tempDir } from '@meshfed/testkit';
import { call } from './helpers.js';

const script = fileURLToPath(new URL('./fixtures/crash-server.js', import.meta.url));

function launch(dataDir: string): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, [script, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve({ child, base: line.trim() });
    });
    child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${err}`)));
  });
}

test('every acknowledged write survives SIGKILL; the index never goes down', async (t) => {
  const dir = tempDir(t);
  const first = await launch(dir);
  t.teardown(() => first.child.kill('SIGKILL'));
  const acked = new Set<string>();
  let maxIndex = 0;
  let killed = false;
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !killed; i++) {
      const name = `svc-${w}-${i}`;
      try {
        const r = await call(first.base, 'PUT', '/v1/catalog/register', {
          Node: `node-${w}`,
          Address: '10.0.0.1',
          Service: { Service: name, Port: 1000 + i },
        });
        if (r.status === 200) acked.add(name);
        const read = await call(first.base, 'GET', '/v1/catalog/services');
        maxIndex = Math.max(maxIndex, Number(read.headers['x-consul-index']));
      } catch {
        return; // connection reset by the kill
      }
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  // Kill while all four writers have requests in flight.
  while (acked.size < 150) await new Promise((r) => setImmediate(r));
  first.child.kill('SIGKILL');
  killed = true;
  await Promise.all(writers);
  await new Promise((r) => first.child.once('exit', r));

  const second = await launch(dir);
  t.teardown(() => second.child.kill('SIGKILL'));
  const after = await call(second.base, 'GET', '/v1/catalog/services');
  const present = new Set(Object.keys(after.json as object));
  const missing = [...acked].filter((n) => !present.has(n));
  t.deepEqual(missing, [], `${missing.length} of ${acked.size} acknowledged writes lost`);
  t.true(
    Number(after.headers['x-consul-index']) >= maxIndex,
    `index ${String(after.headers['x-consul-index'])} < served ${maxIndex}`,
  );
  // And the restarted server takes writes with a higher index.
  await call(second.base, 'PUT', '/v1/catalog/register', {
    Node: 'late',
    Address: '10.0.0.2',
    Service: { Service: 'late' },
  });
  const last = await call(second.base, 'GET', '/v1/catalog/services');
  t.true(Number(last.headers['x-consul-index']) > Number(after.headers['x-consul-index']));
});
