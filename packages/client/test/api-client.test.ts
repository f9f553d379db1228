import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiClient, ApiError } from '@meshfed/client';

// A small real HTTP server with Consul's blocking semantics: it answers at once when ?index is
// absent or older than the current index, and otherwise holds the request until a change or ?wait.
function fakeServer() {
  let index = 5;
  let value = 'v5';
  const waiting = new Set<() => void>();
  const seen: { url: string; token: string | undefined }[] = [];
  const srv = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    seen.push({ url: req.url!, token: req.headers['x-consul-token'] as string | undefined });
    if (url.pathname === '/v1/fail') {
      res.writeHead(403, { 'x-meshfed-error-code': 'MESH_ERR_API_PERMISSION_DENIED' });
      return res.end('Permission denied');
    }
    if (url.pathname === '/v1/echo') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-consul-index': String(index) });
        res.end(JSON.stringify({ got: JSON.parse(body || 'null') }));
      });
      return;
    }
    const answer = () => {
      res.writeHead(200, {
        'content-type': 'application/json',
        'x-consul-index': String(index),
        'x-consul-knownleader': 'true',
      });
      res.end(JSON.stringify({ value }));
    };
    const want = Number(url.searchParams.get('index') ?? 0);
    if (want < index) return answer();
    const waitMs = url.searchParams.get('wait') === '100ms' ? 100 : 5000;
    const done = () => {
      clearTimeout(timer);
      waiting.delete(done);
      answer();
    };
    const timer = setTimeout(done, waitMs);
    waiting.add(done);
  });
  return {
    srv,
    seen,
    set(v: string, newIndex = index + 1) {
      value = v;
      index = newIndex;
      for (const w of [...waiting]) w();
    },
    async listen() {
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    },
  };
}

test('requests carry the token and parse Consul metadata; errors carry status and code', async (t) => {
  const f = fakeServer();
  const c = new ApiClient({ address: await f.listen(), token: 'tok-1' });
  t.teardown(() => (c.close(), f.srv.close()));
  const r = await c.get<{ value: string }>('/v1/thing');
  t.is(r.body.value, 'v5');
  t.is(r.index, 5);
  t.true(r.knownLeader);
  t.is(f.seen[0]!.token, 'tok-1');
  const echoed = await c.put<{ got: unknown }>('/v1/echo', { Name: 'web' });
  t.deepEqual(echoed.body.got, { Name: 'web' });
  const err = await t.throwsAsync(c.get('/v1/fail'));
  t.true(err instanceof ApiError);
  t.is((err as ApiError).httpStatus, 403);
  t.is((err as ApiError).code, 'MESH_ERR_API_PERMISSION_DENIED');
});

test('an unreachable server is MESH_ERR_UNAVAILABLE with advice', async (t) => {
  const f = fakeServer();
  const addr = await f.listen();
  await new Promise((r) => f.srv.close(r));
  const c = new ApiClient({ address: addr });
  t.teardown(() => c.close());
  const err = await t.throwsAsync(c.get('/v1/x'));
  t.is((err as ApiError).code, 'MESH_ERR_UNAVAILABLE');
  t.regex(err!.message, /is it running/);
});

test('watch delivers the first result, then each change, and stops on abort', async (t) => {
  const f = fakeServer();
  const c = new ApiClient({ address: await f.listen() });
  t.teardown(() => (c.close(), f.srv.close()));
  const ac = new AbortController();
  const got: string[] = [];
  let notify: () => void = () => undefined;
  const watching = c.watch<{ value: string }>(
    '/v1/thing',
    (b) => {
      got.push(b.value);
      notify();
    },
    { signal: ac.signal, wait: '100ms' },
  );
  const next = () => new Promise<void>((r) => (notify = r));
  await next();
  t.deepEqual(got, ['v5']);
  // Several timeouts with no change must not produce callbacks.
  await new Promise((r) => setTimeout(r, 250));
  t.deepEqual(got, ['v5']);
  const changed = next();
  f.set('v6');
  await changed;
  t.deepEqual(got, ['v5', 'v6']);
  // The request that was held carried the index the watch had seen.
  t.true(f.seen.some((s) => s.url.includes('index=5')));
  // An index that goes backwards resets the watch and still reports the new value.
  const reset = next();
  f.set('v-restored', 2);
  await reset;
  t.deepEqual(got, ['v5', 'v6', 'v-restored']);
  ac.abort();
  await watching;
});
