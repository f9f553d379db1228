// Shared test setup: a MeshServer on an ephemeral loopback port with its own data dir, plus a tiny
// HTTP helper for endpoints the `consul` npm client has no method for.

import http from 'node:http';
import { silentLogger, type Clock } from '@meshfed/core';
import { tempDir, type Teardown } from '@meshfed/testkit';
import { MeshServer, type MeshServerDeps, type MeshServerOptions } from '../src/index.js';

export async function startServer(
  t: Teardown,
  over: Partial<MeshServerOptions> = {},
  deps: Partial<MeshServerDeps> & { clock?: Clock } = {},
): Promise<MeshServer> {
  const srv = new MeshServer(
    {
      datacenter: 'dc1',
      primaryDatacenter: 'dc1',
      nodeName: 'server-1',
      dataDir: over.dataDir ?? tempDir(t),
      domain: 'consul',
      http: { bindAddress: '127.0.0.1', port: 0 },
      acl: { enabled: false },
      defaultIntentionPolicy: 'allow',
      serverPort: 8300,
      advertiseAddress: '127.0.0.1',
      ...over,
    },
    { logger: silentLogger, ...deps },
  );
  await srv.start();
  t.teardown(() => srv.close());
  return srv;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

export function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload =
      body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request(
      new URL(path, base),
      { method, headers: { ...headers, ...(payload ? { 'content-length': String(payload.length) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
