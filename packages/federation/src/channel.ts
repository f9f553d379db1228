// The server-to-server channel: one WebSocket over mutual TLS per pair of servers, carrying
// msgpack frames (core codec) for request/response and server-push streams, multiplexed by id.
//
// Owns: framing, multiplexing, heartbeats, peer identity checks, refusing bad frames.
// Must never: log raw frame bytes or bodies above debug, let one bad peer affect another, or
// throw out of a socket callback (every failure closes that peer only).
//
// Frame types (id pairs them):
//   req   {m, p}        request method m with params p      -> res {ok, v} | {ok:false, e}
//   sub   {t, p}        open stream on topic t             -> push <body>* then end {e?}
//   unsub               the client closes a stream
//   ping {t, m}         heartbeat (Clock-driven, both sides) carrying our wall and monotonic time
//   pong {t, m, p}      the echo plus the peer's wall time: a clock-offset sample (see clockOffsetMs)

import { X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket, PeerCertificate, DetailedPeerCertificate } from 'node:tls';
import { WebSocket, WebSocketServer, type ClientOptions, type RawData } from 'ws';
import {
  DEFAULT_MAX_FRAME_BYTES,
  MeshError,
  decodeFrame,
  encodeFrame,
  errorMessage,
  parseSpiffeId,
  toMeshError,
  type Clock,
  type Counter,
  type Logger,
  type MeshErrorWire,
  type Registry,
  type TimerHandle,
} from '@meshfed/core';
import type { TlsMaterial } from './interfaces.js';

export interface ChannelOptions {
  /** This server's datacenter and node (sent to the peer; the peer checks them against our cert). */
  datacenter: string;
  node: string;
  /** Server domain for `server.<dc>.<domain>` names (Consul's default `consul`). */
  domain: string;
  maxFrameBytes: number;
  heartbeatMs: number;
  /** A peer silent for this long is closed. */
  heartbeatTimeoutMs: number;
  requestTimeoutMs: number;
}

export const defaultChannelOptions = {
  domain: 'consul',
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  heartbeatMs: 5_000,
  heartbeatTimeoutMs: 15_000,
  requestTimeoutMs: 10_000,
} as const;

export interface PeerInfo {
  /** The peer's datacenter, from its certificate (or its own claim on an unauthenticated join). */
  dc: string;
  node: string;
  /** True when the peer presented a certificate that chains to our bundle with a server identity. */
  authenticated: boolean;
}

export interface StreamSink {
  /** Send one item; resolves when it has been handed to the socket (backpressure). */
  push(body: unknown): Promise<void>;
  /** Aborts when the client unsubscribes or the connection closes. */
  readonly signal: AbortSignal;
}

export type RequestHandler = (params: unknown, peer: Peer) => Promise<unknown> | unknown;
export type StreamHandler = (params: unknown, peer: Peer, sink: StreamSink) => Promise<void>;

/** Methods and topics a side serves. `public` names may be called by unauthenticated (joining) peers. */
export interface Handlers {
  requests: Map<string, RequestHandler>;
  streams: Map<string, StreamHandler>;
  public: Set<string>;
}

export function emptyHandlers(): Handlers {
  return { requests: new Map(), streams: new Map(), public: new Set() };
}

export interface ChannelMetrics {
  framesRejected: Counter;
  framesIn: Counter;
  framesOut: Counter;
  peersRejected: Counter;
}

export function channelMetrics(registry: Registry): ChannelMetrics {
  return {
    framesRejected: registry.counter(
      'meshfed_federation_frames_rejected_total',
      'Frames refused from federation peers (the peer is closed)',
      ['reason'],
    ),
    framesIn: registry.counter(
      'meshfed_federation_frames_received_total',
      'Frames received from federation peers',
    ),
    framesOut: registry.counter('meshfed_federation_frames_sent_total', 'Frames sent to federation peers'),
    peersRejected: registry.counter(
      'meshfed_federation_peers_rejected_total',
      'Federation connections refused at the handshake or upgrade',
      ['reason'],
    ),
  };
}

export interface PeerDeps {
  logger: Logger;
  clock: Clock;
  metrics: ChannelMetrics;
  handlers: Handlers;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  timer: TimerHandle;
}

interface ClientStream {
  onData: (body: unknown) => void | Promise<void>;
  chain: Promise<void>;
  resolve(): void;
  reject(e: unknown): void;
  failed: boolean;
}

export interface Subscription {
  /** Settles when the stream ends: resolves on a clean end, rejects on error or connection loss. */
  readonly done: Promise<void>;
  close(): void;
}

/** One end of a channel connection. Both sides can request and subscribe. */
export class Peer {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly clientStreams = new Map<number, ClientStream>();
  private readonly serverStreams = new Map<number, AbortController>();
  private readonly closeListeners: ((reason: string) => void)[] = [];
  private lastRx: number;
  private heartbeat: TimerHandle | undefined;
  /** Clock samples from ping/pong: the peer's wall clock minus ours, from the fastest recent round trip. */
  private readonly offsets: { offsetMs: number; rttMs: number }[] = [];
  private closedReason: string | undefined;

  constructor(
    private readonly ws: WebSocket,
    readonly info: PeerInfo,
    private readonly options: ChannelOptions,
    private readonly deps: PeerDeps,
  ) {
    this.lastRx = deps.clock.monotonic();
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code: number) => this.onClosed(`socket closed (${code})`));
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        deps.metrics.framesRejected.labels('too_large').inc();
        deps.logger.warn(
          { peer: info.dc, reason: 'too_large' },
          'federation peer sent a bad frame; closing it',
        );
      }
      deps.logger.debug({ err: errorMessage(err), peer: info.dc }, 'federation socket error');
      this.onClosed(`socket error: ${errorMessage(err)}`);
    });
    this.heartbeat = deps.clock.setInterval(() => this.beat(), options.heartbeatMs);
    this.heartbeat.unref();
    this.ping(); // a first clock sample right away, so replication lag is right from the start
  }

  /**
   * The peer's wall clock minus ours, in ms (NTP-style: the sample with the smallest round trip of
   * the last 8 heartbeats, so a slow round trip does not skew it). undefined until the first pong,
   * or when the peer does not echo times. Replication lag uses it to stay right across clock skew.
   */
  get clockOffsetMs(): number | undefined {
    let best: { offsetMs: number; rttMs: number } | undefined;
    for (const o of this.offsets) if (!best || o.rttMs < best.rttMs) best = o;
    return best?.offsetMs;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  onClose(fn: (reason: string) => void): void {
    if (this.closedReason !== undefined) fn(this.closedReason);
    else this.closeListeners.push(fn);
  }

  /** Call a method on the peer. */
  request<T = unknown>(
    method: string,
    params: unknown,
    timeoutMs = this.options.requestTimeoutMs,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new MeshError('MESH_ERR_FED_CHANNEL_CLOSED'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = this.deps.clock.setTimeout(() => {
        this.pending.delete(id);
        reject(
          new MeshError(
            'MESH_ERR_FED_TIMEOUT',
            `${this.info.dc} did not answer "${method}" in ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.send('req', id, { m: method, p: params }).catch((err: unknown) => {
        this.deps.clock.clearTimeout(timer);
        this.pending.delete(id);
        reject(toMeshError(err, 'MESH_ERR_FED_CHANNEL_CLOSED'));
      });
    });
  }

  /**
   * Open a server-push stream. Items are handed to onData one at a time, in order; if onData
   * throws, the stream is closed and `done` rejects with that error.
   */
  subscribe(topic: string, params: unknown, onData: (body: unknown) => void | Promise<void>): Subscription {
    const id = this.nextId++;
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => undefined); // the caller may not await it
    const s: ClientStream = { onData, chain: Promise.resolve(), resolve, reject, failed: false };
    if (this.closed) {
      reject(new MeshError('MESH_ERR_FED_CHANNEL_CLOSED'));
    } else {
      this.clientStreams.set(id, s);
      this.send('sub', id, { t: topic, p: params }).catch((err: unknown) => {
        this.clientStreams.delete(id);
        reject(toMeshError(err, 'MESH_ERR_FED_CHANNEL_CLOSED'));
      });
    }
    return {
      done,
      close: () => {
        if (this.clientStreams.delete(id)) {
          this.send('unsub', id, null).catch(() => undefined);
          resolve();
        }
      },
    };
  }

  close(reason = 'closed by us', code = 1000): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      try {
        this.ws.close(code, reason.slice(0, 120));
      } catch {
        this.ws.terminate();
      }
    }
    this.onClosed(reason);
  }

  /** Drop the TCP connection without a close handshake (tests cut links with this). */
  terminate(): void {
    this.ws.terminate();
    this.onClosed('terminated');
  }

  /** Send raw bytes as one binary message (tests use it to send garbage). */
  sendRaw(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  private send(type: string, id: number, body: unknown): Promise<void> {
    if (this.closed) return Promise.reject(new MeshError('MESH_ERR_FED_CHANNEL_CLOSED'));
    const bytes = encodeFrame({ type, id, body }, this.options.maxFrameBytes);
    this.deps.metrics.framesOut.inc();
    return new Promise((resolve, reject) => {
      this.ws.send(bytes, { binary: true }, (err) => (err ? reject(err) : resolve()));
    });
  }

  private reject(reason: 'decode' | 'too_large' | 'version' | 'unknown_type' | 'text', detail: string): void {
    this.deps.metrics.framesRejected.labels(reason).inc();
    // The reason is ours; the peer's bytes are never logged above debug.
    this.deps.logger.warn(
      { peer: this.info.dc, node: this.info.node, reason },
      'federation peer sent a bad frame; closing it',
    );
    this.deps.logger.debug({ peer: this.info.dc, detail }, 'bad frame detail');
    this.close(`bad frame: ${reason}`, 1008);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    this.lastRx = this.deps.clock.monotonic();
    if (!isBinary) return this.reject('text', 'text message');
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    const decoded = decodeFrame(buf, this.options.maxFrameBytes);
    if (!decoded.ok) {
      const reason =
        decoded.code === 'MESH_ERR_FRAME_TOO_LARGE'
          ? 'too_large'
          : decoded.code === 'MESH_ERR_FRAME_VERSION'
            ? 'version'
            : 'decode';
      return this.reject(reason, decoded.reason);
    }
    this.deps.metrics.framesIn.inc();
    const { type, id, body } = decoded.frame;
    switch (type) {
      case 'req':
        return void this.onRequest(id, body);
      case 'res':
        return this.onResponse(id, body);
      case 'sub':
        return void this.onSubscribe(id, body);
      case 'unsub':
        this.serverStreams.get(id)?.abort(new MeshError('MESH_ERR_FED_CHANNEL_CLOSED', 'unsubscribed'));
        this.serverStreams.delete(id);
        return;
      case 'push':
        return this.onPush(id, body);
      case 'end':
        return this.onEnd(id, body);
      case 'ping': {
        // Echo the sender's times with our wall clock, so it can estimate the offset between us.
        const b = body as { t?: unknown; m?: unknown } | null;
        const echo =
          typeof b?.t === 'number' && typeof b.m === 'number'
            ? { t: b.t, m: b.m, p: this.deps.clock.now() }
            : null;
        this.send('pong', 0, echo).catch(() => undefined);
        return;
      }
      case 'pong':
        return this.onPong(body);
      default:
        return this.reject('unknown_type', type.slice(0, 64));
    }
  }

  private allowed(name: string): boolean {
    return this.info.authenticated || this.deps.handlers.public.has(name);
  }

  private async onRequest(id: number, body: unknown): Promise<void> {
    const b = body as { m?: unknown; p?: unknown } | null;
    const method = typeof b?.m === 'string' ? b.m : '';
    const handler = this.deps.handlers.requests.get(method);
    let reply: { ok: true; v: unknown } | { ok: false; e: MeshErrorWire };
    if (!handler) {
      this.deps.metrics.framesRejected.labels('unknown_method').inc();
      this.deps.logger.warn({ peer: this.info.dc }, 'federation peer called an unknown method');
      reply = {
        ok: false,
        e: new MeshError('MESH_ERR_FED_UNKNOWN_MESSAGE', `unknown method "${method.slice(0, 64)}"`).toWire(),
      };
    } else if (!this.allowed(method)) {
      this.deps.metrics.framesRejected.labels('unauthenticated').inc();
      reply = {
        ok: false,
        e: new MeshError('MESH_ERR_FED_PEER_REJECTED', `"${method}" needs an authenticated server`).toWire(),
      };
    } else {
      try {
        reply = { ok: true, v: (await handler(b?.p, this)) ?? null };
      } catch (err) {
        const e = toMeshError(err);
        if (e.code === 'MESH_ERR_INTERNAL')
          this.deps.logger.error({ err: e.message, method }, 'federation request handler failed');
        reply = { ok: false, e: e.toWire() };
      }
    }
    await this.send('res', id, reply).catch(() => undefined);
  }

  private onResponse(id: number, body: unknown): void {
    const p = this.pending.get(id);
    if (!p) return; // late answer after a timeout
    this.pending.delete(id);
    this.deps.clock.clearTimeout(p.timer);
    const b = body as { ok?: unknown; v?: unknown; e?: unknown } | null;
    if (b?.ok === true) p.resolve(b.v);
    else p.reject(MeshError.fromWire(b?.e));
  }

  private async onSubscribe(id: number, body: unknown): Promise<void> {
    const b = body as { t?: unknown; p?: unknown } | null;
    const topic = typeof b?.t === 'string' ? b.t : '';
    const handler = this.deps.handlers.streams.get(topic);
    if (!handler || !this.allowed(topic)) {
      this.deps.metrics.framesRejected.labels(handler ? 'unauthenticated' : 'unknown_method').inc();
      const e = handler
        ? new MeshError('MESH_ERR_FED_PEER_REJECTED', `"${topic}" needs an authenticated server`)
        : new MeshError('MESH_ERR_FED_UNKNOWN_MESSAGE', `unknown stream "${topic.slice(0, 64)}"`);
      await this.send('end', id, { e: e.toWire() }).catch(() => undefined);
      return;
    }
    const ac = new AbortController();
    this.serverStreams.set(id, ac);
    const sink: StreamSink = {
      push: (item) => {
        if (ac.signal.aborted) return Promise.reject(ac.signal.reason);
        return this.send('push', id, item);
      },
      signal: ac.signal,
    };
    let end: { e?: MeshErrorWire } = {};
    try {
      await handler(b?.p, this, sink);
    } catch (err) {
      if (!ac.signal.aborted) {
        const e = toMeshError(err);
        this.deps.logger.warn({ err: e.message, topic, peer: this.info.dc }, 'federation stream failed');
        end = { e: e.toWire() };
      }
    }
    if (this.serverStreams.delete(id)) await this.send('end', id, end).catch(() => undefined);
  }

  private onPush(id: number, body: unknown): void {
    const s = this.clientStreams.get(id);
    if (!s || s.failed) return;
    s.chain = s.chain.then(async () => {
      if (s.failed) return;
      try {
        await s.onData(body);
      } catch (err) {
        s.failed = true;
        if (this.clientStreams.delete(id)) this.send('unsub', id, null).catch(() => undefined);
        s.reject(err);
      }
    });
  }

  private onEnd(id: number, body: unknown): void {
    const s = this.clientStreams.get(id);
    if (!s) return;
    this.clientStreams.delete(id);
    const e = (body as { e?: unknown } | null)?.e;
    void s.chain.then(() => (e === undefined ? s.resolve() : s.reject(MeshError.fromWire(e))));
  }

  private beat(): void {
    if (this.closed) return;
    if (this.deps.clock.monotonic() - this.lastRx > this.options.heartbeatTimeoutMs) {
      this.deps.logger.warn(
        { peer: this.info.dc },
        'federation peer silent past the heartbeat timeout; closing',
      );
      this.terminate();
      return;
    }
    this.ping();
  }

  private ping(): void {
    this.send('ping', 0, { t: this.deps.clock.now(), m: this.deps.clock.monotonic() }).catch(() => undefined);
  }

  private onPong(body: unknown): void {
    const b = body as { t?: unknown; m?: unknown; p?: unknown } | null;
    if (typeof b?.t !== 'number' || typeof b.m !== 'number' || typeof b.p !== 'number') return;
    const rttMs = this.deps.clock.monotonic() - b.m;
    if (!(rttMs >= 0) || !Number.isFinite(b.p)) return;
    // The peer read its clock about half a round trip after we sent.
    this.offsets.push({ offsetMs: b.p - (b.t + rttMs / 2), rttMs });
    if (this.offsets.length > 8) this.offsets.shift();
  }

  private onClosed(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.deps.clock.clearInterval(this.heartbeat);
    const err = new MeshError('MESH_ERR_FED_CHANNEL_CLOSED', `channel to ${this.info.dc} closed: ${reason}`);
    for (const [, p] of this.pending) {
      this.deps.clock.clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    for (const [, s] of this.clientStreams) void s.chain.then(() => s.reject(err));
    this.clientStreams.clear();
    for (const [, ac] of this.serverStreams) ac.abort(err);
    this.serverStreams.clear();
    for (const fn of this.closeListeners.splice(0)) fn(reason);
  }
}

// --- identity --------------------------------------------------------------------------------

/** The server identity a certificate carries: a SPIFFE server ID, or a DNS `server.<dc>.<domain>`. */
export function serverIdentityOf(
  cert: Pick<PeerCertificate, 'subjectaltname'>,
  domain: string,
): { dc: string; trustDomain?: string } | undefined {
  const san = cert.subjectaltname ?? '';
  for (const part of san.split(/,\s*/)) {
    if (part.startsWith('URI:')) {
      const r = parseSpiffeId(part.slice(4));
      if (r.ok && r.value.kind === 'server')
        return { dc: r.value.datacenter, trustDomain: r.value.trustDomain };
    }
  }
  const suffix = `.${domain}`;
  for (const part of san.split(/,\s*/)) {
    if (!part.startsWith('DNS:')) continue;
    const name = part.slice(4).toLowerCase();
    if (!name.endsWith(suffix)) continue;
    const labels = name.slice(0, -suffix.length).split('.');
    if (labels.length === 2 && labels[0] === 'server') return { dc: labels[1]! };
  }
  return undefined;
}

/** sha256 hex of a certificate's DER: the fingerprint a join token pins. */
export function certFingerprint(pemOrDer: string | Buffer): string {
  return new X509Certificate(pemOrDer).fingerprint256.replaceAll(':', '').toLowerCase();
}

/**
 * Verify that the presented chain (leaf first) ends in a root whose fingerprint is `pin`, by
 * signatures, not by a bundle. `rootPems` are candidate roots the peer told us about.
 */
export function verifyPinnedChain(
  chainDers: Buffer[],
  rootPems: readonly string[],
  pin: string,
  now: number,
): { ok: true } | { ok: false; reason: string } {
  const root = rootPems
    .map((p) => new X509Certificate(p))
    .find((c) => certFingerprint(c.raw) === pin.toLowerCase());
  if (!root) return { ok: false, reason: 'no root with the pinned fingerprint' };
  const certs = chainDers.map((d) => new X509Certificate(d));
  if (certs.length === 0) return { ok: false, reason: 'the peer presented no certificate' };
  for (let i = 0; i < certs.length; i++) {
    const c = certs[i]!;
    if (Date.parse(c.validFrom) > now || Date.parse(c.validTo) < now)
      return { ok: false, reason: `certificate ${i} is outside its validity period` };
    if (certFingerprint(c.raw) === certFingerprint(root.raw)) return { ok: true };
    if (c.checkIssued(root) && c.verify(root.publicKey)) return { ok: true };
    const next = certs[i + 1];
    if (!next || !c.checkIssued(next) || !c.verify(next.publicKey))
      return { ok: false, reason: `certificate ${i} is not signed by the next one or by the pinned root` };
  }
  return { ok: false, reason: 'chain does not reach the pinned root' };
}

function peerChainDers(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true) as DetailedPeerCertificate;
  const seen = new Set<string>();
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

// --- server ----------------------------------------------------------------------------------

export interface ChannelServerDeps extends PeerDeps {
  tlsMaterial: () => TlsMaterial;
  /** Called for every accepted peer. */
  onPeer?: (peer: Peer) => void;
}

/** Accepts channel connections: authenticated servers, and (when allowed) joining DCs. */
export class ChannelServer {
  private https: HttpsServer | undefined;
  private readonly wss: WebSocketServer;
  private readonly peers = new Set<Peer>();

  constructor(
    private readonly options: ChannelOptions & { host: string; port: number; allowJoin: boolean },
    private readonly deps: ChannelServerDeps,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrameBytes,
      perMessageDeflate: false,
    });
  }

  async listen(): Promise<AddressInfo> {
    const m = this.deps.tlsMaterial();
    const server = createHttpsServer({
      key: m.key,
      cert: m.cert,
      ca: m.ca,
      requestCert: true,
      // Verified below per path: the join path admits a DC that has no certificate yet.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    });
    server.on('request', (_req, res) => {
      res
        .writeHead(426, { 'content-type': 'text/plain' })
        .end('federation channel: WebSocket upgrade required\n');
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    server.on('tlsClientError', (err) => {
      this.deps.metrics.peersRejected.labels('tls').inc();
      this.deps.logger.debug({ err: errorMessage(err) }, 'federation TLS handshake failed');
    });
    this.https = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  address(): AddressInfo | undefined {
    return (this.https?.address() as AddressInfo | null) ?? undefined;
  }

  /** Re-read the TLS material (after a certificate or bundle change); applies to new connections. */
  reloadTls(): void {
    const m = this.deps.tlsMaterial();
    this.https?.setSecureContext({ key: m.key, cert: m.cert, ca: m.ca });
  }

  connectedPeers(): Peer[] {
    return [...this.peers];
  }

  async close(): Promise<void> {
    for (const p of this.peers) p.close('server shutting down', 1001);
    this.peers.clear();
    const s = this.https;
    this.https = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private refuse(socket: Duplex, status: number, reason: string): void {
    this.deps.metrics.peersRejected.labels(reason).inc();
    this.deps.logger.warn({ reason }, 'federation connection refused');
    socket.end(
      `HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : 'Not Found'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
    );
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const tlsSocket = req.socket as TLSSocket;
    const url = new URL(req.url ?? '/', 'https://x');
    const claimedDc = url.searchParams.get('dc') ?? '';
    const node = url.searchParams.get('node') ?? '';
    let info: PeerInfo;
    if (url.pathname === '/v1/federation') {
      if (!tlsSocket.authorized) return this.refuse(socket, 403, 'untrusted_certificate');
      const id = serverIdentityOf(tlsSocket.getPeerCertificate(), this.options.domain);
      if (!id) return this.refuse(socket, 403, 'not_a_server_certificate');
      if (id.dc !== claimedDc) return this.refuse(socket, 403, 'datacenter_mismatch');
      info = { dc: id.dc, node, authenticated: true };
    } else if (url.pathname === '/v1/federation/join') {
      if (!this.options.allowJoin) return this.refuse(socket, 403, 'join_not_served');
      info = { dc: claimedDc, node, authenticated: false };
    } else {
      return this.refuse(socket, 404, 'bad_path');
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const peer = new Peer(ws, info, this.options, this.deps);
      this.peers.add(peer);
      peer.onClose(() => this.peers.delete(peer));
      this.deps.logger.debug(
        { peer: info.dc, node, authenticated: info.authenticated },
        'federation peer connected',
      );
      this.deps.onPeer?.(peer);
    });
  }
}

// --- client ----------------------------------------------------------------------------------

export interface DialTarget {
  /** Where to connect: the server itself, or a mesh gateway that routes by SNI. */
  host: string;
  port: number;
  /** The datacenter (and node) we expect to reach; the SNI is `<node>.server.<dc>.<domain>`. */
  dc: string;
  node?: string;
}

export type DialAuth =
  | { kind: 'mtls'; material: TlsMaterial }
  /** Join: no client certificate; the server's chain must reach a root with this fingerprint. */
  | { kind: 'pinned'; fingerprint: string };

export function serverName(target: DialTarget, domain: string): string {
  return target.node ? `${target.node}.server.${target.dc}.${domain}` : `server.${target.dc}.${domain}`;
}

/** Open a channel connection. Resolves once the WebSocket is open and the server verified. */
export function dialPeer(
  target: DialTarget,
  auth: DialAuth,
  options: ChannelOptions,
  deps: PeerDeps,
): Promise<Peer> {
  const servername = serverName(target, options.domain);
  const path = auth.kind === 'mtls' ? '/v1/federation' : '/v1/federation/join';
  const url = `wss://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}${path}?dc=${encodeURIComponent(options.datacenter)}&node=${encodeURIComponent(options.node)}`;
  const tlsOpts =
    auth.kind === 'mtls'
      ? {
          key: auth.material.key,
          cert: auth.material.cert,
          ca: auth.material.ca,
          rejectUnauthorized: true,
          checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
            const id = serverIdentityOf(cert, options.domain);
            if (!id) return new Error('the peer certificate carries no server identity');
            if (id.dc !== target.dc)
              return new Error(`the peer is a server of ${id.dc}, expected ${target.dc}`);
            return undefined;
          },
        }
      : { rejectUnauthorized: false };
  return new Promise<Peer>((resolve, reject) => {
    const ws = new WebSocket(url, {
      ...tlsOpts,
      servername,
      minVersion: 'TLSv1.3',
      maxPayload: options.maxFrameBytes,
      perMessageDeflate: false,
      handshakeTimeout: options.requestTimeoutMs,
    } as unknown as ClientOptions); // servername reaches tls.connect (ws passes TLS options through)
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(
        err instanceof MeshError
          ? err
          : new MeshError(
              'MESH_ERR_FED_PRIMARY_UNREACHABLE',
              `cannot reach ${servername} at ${target.host}:${target.port}: ${errorMessage(err)}`,
              { cause: err },
            ),
      );
    };
    ws.once('error', fail);
    ws.once('unexpected-response', (_req, res) => {
      fail(
        new MeshError(
          'MESH_ERR_FED_PEER_REJECTED',
          `${servername} refused the channel (HTTP ${res.statusCode})`,
        ),
      );
    });
    ws.once('open', () => {
      if (settled) return;
      settled = true;
      ws.off('error', fail);
      const socket = (ws as unknown as { _socket: TLSSocket })._socket;
      const peer = new Peer(
        ws,
        { dc: target.dc, node: target.node ?? '', authenticated: true },
        options,
        deps,
      );
      if (auth.kind === 'pinned') {
        // Keep the presented chain for the caller to verify against the pin before sending secrets.
        pinnedChains.set(peer, peerChainDers(socket));
      }
      resolve(peer);
    });
  });
}

const pinnedChains = new WeakMap<Peer, Buffer[]>();

/** The certificate chain a pinned (join) connection's server presented, leaf first. */
export function presentedChain(peer: Peer): Buffer[] {
  return pinnedChains.get(peer) ?? [];
}
