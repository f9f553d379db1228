// ApiClient: how every meshfed process that is not the server (gateway, sidecar, CLI, testbed)
// talks to its DC's server, over the Consul-compatible HTTP API.
//
// It owns: the request/response plumbing (token header, JSON bodies, TLS when the address is
// https), Consul's response metadata (X-Consul-Index, KnownLeader, LastContact), and blocking-query
// watches with Consul's client rules. It never logs tokens and never retries a write on its own.
//
// node:http is used rather than fetch: a blocking query may legitimately wait 10 minutes, longer
// than fetch's (undici's) default header timeout.

import http from 'node:http';
import https from 'node:https';
import {
  backoff,
  isErrorCode,
  MeshError,
  sleep,
  systemClock,
  type Clock,
  type ErrorCode,
} from '@meshfed/core';

export interface ApiClientOptions {
  /** Base URL of the server's HTTP API, e.g. http://127.0.0.1:8500. */
  address: string;
  /** ACL token sent as X-Consul-Token (never logged). */
  token?: string | undefined;
  /** PEM material for https addresses (CA bundle to verify the server; client cert if required). */
  tls?: { ca?: string; cert?: string; key?: string } | undefined;
  /** Timeout for requests that are not blocking queries. */
  requestTimeoutMs?: number;
}

export const defaultApiAddress = 'http://127.0.0.1:8500';

export interface QueryMeta {
  /** X-Consul-Index, or 0 when the response had none. */
  index: number;
  knownLeader: boolean;
  lastContactMs: number;
}

export interface ApiResponse<T> extends QueryMeta {
  status: number;
  body: T;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Blocking query: wait until the result's index exceeds this. */
  index?: number;
  /** Blocking query: maximum wait, Go duration ("5m", "30s"). */
  wait?: string;
  signal?: AbortSignal;
  /** Extra headers (not logged). */
  headers?: Record<string, string>;
}

/** An HTTP answer with a non-2xx status. `code` is meshfed's error code when the server sent one. */
export class ApiError extends MeshError {
  constructor(
    readonly httpStatus: number,
    readonly responseText: string,
    code: ErrorCode,
    readonly path: string,
  ) {
    super(
      code,
      `${path}: HTTP ${httpStatus}: ${responseText.trim() || http.STATUS_CODES[httpStatus] || 'error'}`,
      {
        details: { httpStatus },
      },
    );
    this.name = 'ApiError';
  }
}

function codeForStatus(status: number): ErrorCode {
  if (status === 400) return 'MESH_ERR_API_BAD_REQUEST';
  if (status === 403 || status === 401) return 'MESH_ERR_API_PERMISSION_DENIED';
  if (status === 404) return 'MESH_ERR_API_NOT_FOUND';
  if (status === 405) return 'MESH_ERR_API_METHOD_NOT_ALLOWED';
  if (status === 409) return 'MESH_ERR_API_CONFLICT';
  if (status === 413) return 'MESH_ERR_API_BODY_TOO_LARGE';
  if (status === 429) return 'MESH_ERR_CA_RATE_LIMITED';
  if (status === 503) return 'MESH_ERR_UNAVAILABLE';
  return 'MESH_ERR_INTERNAL';
}

export interface WatchOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** Per-round wait; Consul's default is 5m. */
  wait?: string;
  signal: AbortSignal;
  /** Called for every failed round (the watch keeps going with backoff). */
  onError?: (err: unknown, attempt: number) => void;
  /** Minimum time between rounds, so a busy index cannot make the watch spin (default 0). */
  minIntervalMs?: number;
}

export class ApiClient {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly clock: Clock;

  constructor(
    private readonly options: ApiClientOptions,
    deps: { clock?: Clock } = {},
  ) {
    this.base = new URL(options.address.includes('://') ? options.address : `http://${options.address}`);
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:')
      throw new MeshError(
        'MESH_ERR_ADDRESS_INVALID',
        `API address ${options.address} must be http:// or https://`,
      );
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, ...options.tls })
        : new http.Agent({ keepAlive: true });
    this.clock = deps.clock ?? systemClock;
  }

  get address(): string {
    return this.base.origin;
  }

  async get<T>(path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>('GET', path, opts);
  }
  async put<T>(path: string, body?: unknown, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>('PUT', path, { ...opts, body });
  }
  async post<T>(path: string, body?: unknown, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>('POST', path, { ...opts, body });
  }
  async delete<T>(path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>('DELETE', path, opts);
  }

  /** One HTTP request. Non-2xx answers throw ApiError; transport failures throw MESH_ERR_UNAVAILABLE. */
  request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(path, this.base);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v === undefined || v === false) continue;
      url.searchParams.set(k, v === true ? '' : String(v));
    }
    const blocking = opts.index !== undefined && opts.index > 0;
    if (blocking) {
      url.searchParams.set('index', String(opts.index));
      if (opts.wait) url.searchParams.set('wait', opts.wait);
    }
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (this.options.token) headers['x-consul-token'] = this.options.token;
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const mod = this.base.protocol === 'https:' ? https : http;
    const display = `${method} ${url.pathname}`;

    return new Promise<ApiResponse<T>>((resolve, reject) => {
      const req = mod.request(url, { method, headers, agent: this.agent, signal: opts.signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(unavailable(display, err)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) {
            const sent = res.headers['x-meshfed-error-code'];
            const code = isErrorCode(sent) ? sent : codeForStatus(status);
            return reject(new ApiError(status, text, code, display));
          }
          let body: unknown = text;
          const type = res.headers['content-type'] ?? '';
          if (text.length > 0 && (type.includes('json') || /^[[{"]|^(true|false|null|\d)/.test(text))) {
            try {
              body = JSON.parse(text);
            } catch {
              body = text;
            }
          }
          resolve({
            status,
            body: body as T,
            index: Number(res.headers['x-consul-index'] ?? 0) || 0,
            knownLeader: res.headers['x-consul-knownleader'] === 'true',
            lastContactMs: Number(res.headers['x-consul-lastcontact'] ?? 0) || 0,
          });
        });
      });
      if (!blocking) {
        req.setTimeout(this.options.requestTimeoutMs ?? 30_000, () =>
          req.destroy(new MeshError('MESH_ERR_TIMEOUT', `${display}: no answer from ${this.base.origin}`)),
        );
      }
      req.on('error', (err) => reject(opts.signal?.aborted ? err : unavailable(display, err)));
      req.end(payload);
    });
  }

  /**
   * Watch a blocking endpoint until `signal` aborts: `onChange` runs with the first result and then
   * each time the index moves. Follows Consul's client rules: an index that goes backwards resets to
   * 0, an index below 1 is treated as 1, failed rounds back off with jitter (250 ms doubling to 30 s).
   * Resolves when aborted; never rejects for a failed round.
   */
  async watch<T>(
    path: string,
    onChange: (body: T, meta: QueryMeta) => void | Promise<void>,
    opts: WatchOptions,
  ): Promise<void> {
    let index = 0;
    let attempt = 0;
    let first = true;
    while (!opts.signal.aborted) {
      const started = this.clock.monotonic();
      try {
        const reqOpts: RequestOptions = { signal: opts.signal, wait: opts.wait ?? '5m' };
        if (opts.query) reqOpts.query = opts.query;
        if (index > 0) reqOpts.index = index;
        const res = await this.get<T>(path, reqOpts);
        attempt = 0;
        let next = res.index < 1 ? 1 : res.index;
        if (next < index) next = 0; // went backwards (snapshot restore, resync): start over
        if (first || next !== index) {
          first = false;
          index = next;
          await onChange(res.body, res);
        }
      } catch (err) {
        if (opts.signal.aborted) break;
        opts.onError?.(err, attempt);
        await sleep(this.clock, backoff(attempt++, 250, 30_000), opts.signal).catch(() => undefined);
        continue;
      }
      const min = opts.minIntervalMs ?? 0;
      const elapsed = this.clock.monotonic() - started;
      if (min > elapsed) await sleep(this.clock, min - elapsed, opts.signal).catch(() => undefined);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}

function unavailable(what: string, err: unknown): MeshError {
  const reason = err instanceof Error ? err.message : String(err);
  return new MeshError(
    'MESH_ERR_UNAVAILABLE',
    `${what}: cannot reach the meshfed server (${reason}); is it running?`,
    {
      cause: err,
    },
  );
}
