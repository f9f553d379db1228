// The white paper's `dashboard` service: a web page that calls `counting` through its sidecar's
// upstream listener (plain HTTP to 127.0.0.1) and shows which datacenter answered.
//
//   node testbed/dist/src/apps/dashboard.js --port 9002 --upstream http://127.0.0.1:9191
//   GET /          the page (refreshes itself)
//   GET /api/count one call to counting, as JSON: { ok, answer: {count, datacenter, instance}, ms }

import http from 'node:http';
import { parseArgs } from 'node:util';

export interface CountAnswer {
  ok: boolean;
  answer?: { count: number; datacenter: string; instance: string };
  error?: string;
  ms: number;
}

function callUpstream(upstream: string): Promise<CountAnswer> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.get(upstream, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        const ms = Math.round((performance.now() - started) * 10) / 10;
        try {
          resolve({ ok: res.statusCode === 200, answer: JSON.parse(body), ms });
        } catch {
          resolve({ ok: false, error: `unexpected answer (HTTP ${res.statusCode})`, ms });
        }
      });
      res.on('error', (err) =>
        resolve({ ok: false, error: err.message, ms: Math.round(performance.now() - started) }),
      );
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 5 s')));
    req.on('error', (err) =>
      resolve({
        ok: false,
        error: err.message || 'connection failed',
        ms: Math.round(performance.now() - started),
      }),
    );
  });
}

const page = `<!doctype html><html><head><meta charset="utf-8"><title>dashboard</title>
<style>body{font:16px system-ui;margin:3em}#n{font-size:4em}#e{color:#b00}</style></head>
<body><h1>dashboard <small>(dc1)</small></h1><p>counting says:</p><div id="n">…</div><p id="dc"></p><p id="e"></p>
<script>
async function tick(){try{const r=await fetch('/api/count');const j=await r.json();
if(j.ok){n.textContent=j.answer.count;dc.textContent='answered by '+j.answer.instance+' in '+j.answer.datacenter+' ('+j.ms+' ms)';e.textContent=''}
else{e.textContent='counting unreachable: '+j.error}}catch(x){e.textContent=String(x)}}
setInterval(tick,1000);tick();
</script></body></html>`;

export function startDashboard(opts: {
  port: number;
  host?: string;
  upstream: string;
}): Promise<http.Server> {
  const server = http.createServer(async (req, res) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('ok\n');
    }
    if (req.url === '/api/count') {
      const r = await callUpstream(opts.upstream);
      res.writeHead(r.ok ? 200 : 502, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(r) + '\n');
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve(server));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, upstream: { type: 'string' }, host: { type: 'string' } },
  });
  const port = Number(values.port ?? 9002);
  const upstream = values.upstream ?? 'http://127.0.0.1:9191/';
  const server = await startDashboard({ port, upstream, host: values.host ?? '127.0.0.1' });
  console.log(JSON.stringify({ msg: 'dashboard listening', port, upstream }));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
