// Errors, durations, addresses, metrics and the logger's redaction.
import test from 'ava';
import {
  createLogger,
  formatDuration,
  formatHostPort,
  MeshError,
  mergeSnapshots,
  parseDuration,
  parseHostPort,
  Registry,
  renderMetrics,
  startAll,
  closeAll,
  type Startable,
} from '@meshfed/core';

test('MeshError carries a stable code and HTTP status and survives the wire', (t) => {
  const err = new MeshError('MESH_ERR_CA_RATE_LIMITED', undefined, { details: { retryAfterMs: 20 } });
  t.is(err.status, 429);
  t.is(err.message, 'CSR signing rate limit reached, retry later');
  const back = MeshError.fromWire(JSON.parse(JSON.stringify(err.toWire())));
  t.is(back.code, 'MESH_ERR_CA_RATE_LIMITED');
  t.deepEqual(back.details, { retryAfterMs: 20 });
  t.is(MeshError.fromWire({ code: 'NOPE', message: 'x' }).code, 'MESH_ERR_INTERNAL');
  t.is(MeshError.fromWire('junk').code, 'MESH_ERR_INTERNAL');
});

test('Go durations parse and format like Consul writes them', (t) => {
  const cases: [string, number][] = [
    ['72h', 72 * 3600e3],
    ['1h30m', 5400e3],
    ['500ms', 500],
    ['1.5s', 1500],
    ['30', 30e3],
    ['10m', 600e3],
    ['0', 0],
  ];
  for (const [s, ms] of cases) t.deepEqual(parseDuration(s), { ok: true, value: ms }, s);
  for (const bad of ['', 'h', '10x', '1h 2m', '--1s']) t.false(parseDuration(bad).ok, bad);
  t.is(formatDuration(72 * 3600e3), '72h0m0s');
  t.is(formatDuration(90e3), '1m30s');
  t.is(formatDuration(250), '250ms');
});

test('host:port parsing handles IPv4, IPv6 and names, and says what is wrong', (t) => {
  t.deepEqual(parseHostPort('127.0.0.1:8500'), { ok: true, value: { host: '127.0.0.1', port: 8500 } });
  t.deepEqual(parseHostPort('[::1]:8443'), { ok: true, value: { host: '::1', port: 8443 } });
  t.deepEqual(parseHostPort('gw.example.com', 8443), {
    ok: true,
    value: { host: 'gw.example.com', port: 8443 },
  });
  t.is(formatHostPort({ host: '::1', port: 1 }), '[::1]:1');
  const bad = parseHostPort('127.0.0.1:99999');
  t.false(bad.ok);
  if (!bad.ok) t.regex(bad.reason, /out of range/);
  t.false(parseHostPort('::1:80').ok);
  t.false(parseHostPort('host').ok);
});

test('metrics render in Prometheus text format and merge across processes', (t) => {
  const a = new Registry();
  const c = a.counter('meshfed_gateway_connections_total', 'Connections accepted', ['route']);
  c.labels('local').inc();
  c.labels('local').inc(2);
  c.labels('remote').inc();
  const h = a.histogram('meshfed_gateway_hello_wait_seconds', 'ClientHello wait', [], [0.01, 0.1]);
  h.observe(0.005);
  h.observe(0.05);
  h.observe(5);
  const text = a.render();
  t.regex(text, /# TYPE meshfed_gateway_connections_total counter/);
  t.regex(text, /meshfed_gateway_connections_total\{route="local"\} 3/);
  t.regex(text, /meshfed_gateway_hello_wait_seconds_bucket\{le="0.01"\} 1/);
  t.regex(text, /meshfed_gateway_hello_wait_seconds_bucket\{le="0.1"\} 2/);
  t.regex(text, /meshfed_gateway_hello_wait_seconds_bucket\{le="\+Inf"\} 3/);
  t.regex(text, /meshfed_gateway_hello_wait_seconds_count 3/);

  const b = new Registry();
  b.counter('meshfed_gateway_connections_total', 'Connections accepted', ['route']).labels('local').inc(10);
  b.histogram('meshfed_gateway_hello_wait_seconds', 'ClientHello wait', [], [0.01, 0.1]).observe(0.001);
  const merged = renderMetrics(mergeSnapshots([a.snapshot(), b.snapshot()]));
  t.regex(merged, /meshfed_gateway_connections_total\{route="local"\} 13/);
  t.regex(merged, /meshfed_gateway_connections_total\{route="remote"\} 1/);
  t.regex(merged, /meshfed_gateway_hello_wait_seconds_bucket\{le="0.01"\} 2/);
  t.regex(merged, /meshfed_gateway_hello_wait_seconds_count 4/);
  t.throws(() => c.labels('a', 'b'), { message: /takes 1 label values/ });
});

test('the logger writes JSON lines with bindings and never prints secrets', (t) => {
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: { write: (s: string) => void lines.push(s) },
    bindings: { component: 'server', dc: 'dc1', node: 'n1' },
  });
  log
    .child({ component: 'ca' })
    .info(
      { token: 'secret-123', req: { headers: { authorization: 'Bearer abc' } }, privateKey: 'PEM' },
      'hello',
    );
  const rec = JSON.parse(lines[0]!);
  t.is(rec.msg, 'hello');
  t.is(rec.dc, 'dc1');
  t.is(rec.node, 'n1');
  t.is(rec.component, 'ca');
  t.false(lines[0]!.includes('secret-123'));
  t.false(lines[0]!.includes('Bearer abc'));
  t.false(lines[0]!.includes('PEM'));
});

test('startAll closes what it started when a later component fails, in reverse order', async (t) => {
  const events: string[] = [];
  const comp = (name: string, fail = false): Startable => ({
    start: async () => {
      if (fail) throw new Error(`${name} failed`);
      events.push(`start ${name}`);
    },
    close: async () => void events.push(`close ${name}`),
  });
  await t.throwsAsync(startAll([comp('a'), comp('b'), comp('c', true)]), { message: 'c failed' });
  t.deepEqual(events, ['start a', 'start b', 'close b', 'close a']);
  t.deepEqual(await closeAll([]), []);
});
