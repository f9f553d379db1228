// The HTTP plumbing: routing, body reading with a size limit, Consul's blocking-query rules and
// response headers, and turning errors into Consul-style text bodies with X-Meshfed-Error-Code.
// Knows nothing about the catalog; server.ts registers the routes.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { MeshError, parseDuration, toMeshError, type Clock, type Logger } from '@meshfed/core';
import type { Store, WatchKey } from '@meshfed/store';
import { bad } from './validate.js';

export interface ApiRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** The token from X-Consul-Token or Authorization: Bearer, if any. */
  token: string | undefined;
  /** Aborts when the client goes away or the server closes. */
  signal: AbortSignal;
  /** The parsed JSON body (undefined when empty). */
  body(): Promise<unknown>;
}

export interface ApiResponse {
  status?: number;
  body: unknown;
  /** Set by blocking reads; becomes X-Consul-Index. */
  index?: number;
  headers?: Record<string, string>;
  /** Send the body as text/plain instead of JSON. */
  text?: boolean;
}

export type Handler = (req: ApiRequest) => ApiResponse | Promise<ApiResponse>;

interface Route {
  method: string;
  parts: string[];
  rest: boolean;
  write: boolean;
  handler: Handler;
}

export interface BlockingOptions {
  defaultWaitMs: number;
  maxWaitMs: number;
  random: () => number;
}

export const defaultBlockingOptions: BlockingOptions = {
  defaultWaitMs: 5 * 60_000,
  maxWaitMs: 10 * 60_000,
  random: Math.random,
};

export class Router {
  private readonly routes: Route[] = [];

  /** `pattern` like `/v1/catalog/service/:service`; a trailing `*` captures the rest as `rest`. */
  add(method: string, pattern: string, handler: Handler, opts: { write?: boolean } = {}): void {
    const rest = pattern.endsWith('/*');
    const parts = (rest ? pattern.slice(0, -2) : pattern).split('/').filter(Boolean);
    this.routes.push({ method, parts, rest, handler, write: opts.write ?? method !== 'GET' });
  }

  match(
    method: string,
    path: string,
  ): { route: Route; params: Record<string, string> } | 'method' | undefined {
    const segs = path.split('/').filter(Boolean);
    let methodMismatch = false;
    for (const r of this.routes) {
      if (r.rest ? segs.length <= r.parts.length : segs.length !== r.parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < r.parts.length; i++) {
        const p = r.parts[i]!;
        const s = decodeURIComponent(segs[i]!);
        if (p.startsWith(':')) params[p.slice(1)] = s;
        else if (p !== s) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (r.rest) params['rest'] = segs.slice(r.parts.length).map(decodeURIComponent).join('/');
      if (r.method !== method && !(method === 'HEAD' && r.method === 'GET')) {
        methodMismatch = true;
        continue;
      }
      return { route: r, params };
    }
    return methodMismatch ? 'method' : undefined;
  }
}

export function tokenOf(headers: IncomingMessage['headers']): string | undefined {
  const h = headers['x-consul-token'];
  if (typeof h === 'string' && h !== '') return h;
  const auth = headers['authorization'];
  if (typeof auth === 'string' && /^bearer /i.test(auth)) return auth.slice(7).trim();
  return undefined;
}

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      return reject(
        new MeshError(
          'MESH_ERR_API_BODY_TOO_LARGE',
          `request body is ${declared} bytes; the limit is ${limit}`,
        ),
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(
          new MeshError('MESH_ERR_API_BODY_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`),
        );
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function parseJson(buf: Buffer): unknown {
  if (buf.length === 0) return undefined;
  try {
    return JSON.parse(buf.toString('utf8')) as unknown;
  } catch (err) {
    throw new MeshError(
      'MESH_ERR_API_BAD_REQUEST',
      `body: request decode failed: ${(err as Error).message}`,
      {
        details: { field: 'body' },
      },
    );
  }
}

/** Consul's blocking read: wait for a change under `keys` after `?index=`, up to `?wait=` + jitter. */
export async function blockingRead(
  req: ApiRequest,
  store: Store,
  clock: Clock,
  opts: BlockingOptions,
  keys: readonly WatchKey[],
  read: () => unknown,
): Promise<ApiResponse> {
  const rawIndex = req.query.get('index');
  let minIndex = 0;
  if (rawIndex !== null && rawIndex !== '') {
    minIndex = Number(rawIndex);
    if (!Number.isInteger(minIndex) || minIndex < 0)
      throw bad('index', `expected a non-negative integer, got "${rawIndex}"`);
  }
  if (minIndex > 0 && store.indexOf(keys) <= minIndex) {
    let wait = opts.defaultWaitMs;
    const rawWait = req.query.get('wait');
    if (rawWait !== null && rawWait !== '') {
      const r = parseDuration(rawWait);
      if (!r.ok) throw bad('wait', `expected a duration like "30s", got "${rawWait}" (${r.reason})`);
      wait = r.value;
    }
    wait = Math.min(wait, opts.maxWaitMs);
    // Consul adds up to wait/16 of jitter so that many watchers do not return in lockstep.
    wait += opts.random() * (wait / 16);
    const ac = new AbortController();
    const timer = clock.setTimeout(() => ac.abort(new Error('wait elapsed')), wait);
    const onAbort = (): void => ac.abort(req.signal.reason);
    req.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await store.waitFor(keys, minIndex, ac.signal);
    } catch {
      // timeout or client gone: answer with the current state either way
    } finally {
      clock.clearTimeout(timer);
      req.signal.removeEventListener('abort', onAbort);
    }
  }
  // Read the index before the data: a write landing in between makes the next round come back at once.
  const index = store.indexOf(keys);
  return { body: read(), index };
}

export function sendError(res: ServerResponse, err: unknown, logger: Logger): void {
  const e = toMeshError(err);
  if (e.status >= 500) logger.error({ err: e, code: e.code }, 'request failed');
  else logger.debug({ code: e.code, msg: e.message }, 'request rejected');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = Buffer.from(e.message + '\n');
  res.writeHead(e.status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': body.length,
    'x-meshfed-error-code': e.code,
  });
  res.end(body);
}
