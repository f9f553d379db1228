// Admin HTTP listener: /metrics (Prometheus text), /ready (200 or 503), /routes (the live table as
// JSON, what `meshfed gateway routes` prints). Keep it on loopback; it serves nothing secret, but it
// does reveal the topology.

import http from 'node:http';
import { MeshError, type Logger } from '@meshfed/core';
import type { RouteJson } from './routes.js';

export interface AdminHandlers {
  metrics(): string | Promise<string>;
  ready(): boolean;
  routes(): RoutesResponse | Promise<RoutesResponse>;
}

export interface RoutesResponse {
  datacenter: string;
  trustDomain: string | null;
  routes: RouteJson[];
  endpoints: { endpoint: string; active: number; ejected: boolean }[];
}

export class AdminServer {
  private server: http.Server | undefined;
  constructor(
    private readonly listen: { host: string; port: number },
    private readonly handlers: AdminHandlers,
    private readonly deps: { logger: Logger },
  ) {}

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      void this.handle(req, res).catch((err: unknown) => {
        this.deps.logger.warn({ err }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new MeshError('MESH_ERR_GATEWAY_LISTEN', `admin listener: ${err.message}`, { cause: err })),
      );
      server.listen(this.listen.port, this.listen.host, () => resolve());
    });
  }

  address(): { host: string; port: number } {
    const a = this.server?.address();
    if (a && typeof a === 'object') return { host: a.address, port: a.port };
    return this.listen;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET', 'x-meshfed-error-code': 'MESH_ERR_API_METHOD_NOT_ALLOWED' });
      return void res.end();
    }
    if (path === '/metrics') {
      const body = await this.handlers.metrics();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      return void res.end(body);
    }
    if (path === '/ready') {
      const ok = this.handlers.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      return void res.end(ok ? 'ready\n' : 'not ready\n');
    }
    if (path === '/routes') {
      const body = JSON.stringify(await this.handlers.routes(), null, 2);
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(body + '\n');
    }
    res.writeHead(404, { 'content-type': 'text/plain', 'x-meshfed-error-code': 'MESH_ERR_API_NOT_FOUND' });
    res.end('not found\n');
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/** The human table `meshfed gateway routes` prints (the JSON form is RoutesResponse as is). */
export function formatRoutesTable(r: RoutesResponse): string {
  const ejected = new Set(r.endpoints.filter((e) => e.ejected).map((e) => e.endpoint));
  const rows = r.routes.map((x) => [
    x.match,
    x.class,
    x.datacenter,
    x.endpoints.map((e) => (ejected.has(e) ? `${e} (ejected)` : e)).join(', ') || '-',
  ]);
  const head = ['MATCH', 'CLASS', 'DC', 'ENDPOINTS'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const title = `datacenter ${r.datacenter}, trust domain ${r.trustDomain ?? '(none yet)'}, ${r.routes.length} routes`;
  return [title, line(head), ...rows.map(line)].join('\n') + '\n';
}
