// The white paper's `counting` service: a counter over HTTP that says which datacenter and
// instance answered. It knows nothing about TLS or the mesh; its sidecar does that.
//
//   node testbed/dist/src/apps/counting.js --port 9003 --datacenter dc2 [--instance counting-dc2]

import http from 'node:http';
import { parseArgs } from 'node:util';

export function startCounting(opts: {
  port: number;
  host?: string;
  datacenter: string;
  instance: string;
}): Promise<http.Server> {
  let count = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('ok\n');
    }
    count++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ count, datacenter: opts.datacenter, instance: opts.instance }) + '\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve(server));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      datacenter: { type: 'string' },
      instance: { type: 'string' },
      host: { type: 'string' },
    },
  });
  const port = Number(values.port ?? 9003);
  const datacenter = values.datacenter ?? 'dc1';
  const server = await startCounting({
    port,
    datacenter,
    instance: values.instance ?? `counting-${datacenter}`,
    host: values.host ?? '127.0.0.1',
  });
  console.log(JSON.stringify({ msg: 'counting listening', port, datacenter }));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
