// Test helpers: a throwaway PKI made with openssl, TLS and raw backends, and clients that can
// dribble or re-record their ClientHello. Real sockets on 127.0.0.1 only.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { ExecutionContext } from 'ava';
import { Registry, silentLogger, systemClock, type Clock } from '@meshfed/core';
import { tempDir } from '@meshfed/testkit';
import { MeshGateway, StaticRouteSource, type MeshGatewayOptions, type RouteSource } from '../src/index.js';

export interface Pki {
  ca: string;
  leaf(name: string): { cert: string; key: string };
}

export function makePki(t: ExecutionContext, names: string[]): Pki {
  const dir = tempDir(t, 'gw-pki-');
  const ossl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ossl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=gw-test-ca',
  );
  const leaves = new Map<string, { cert: string; key: string }>();
  names.forEach((name, i) => {
    const f = `leaf${i}`;
    ossl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${f}.key`,
      '-out',
      `${f}.csr`,
      '-subj',
      `/CN=leaf${i}`,
    );
    const ext = join(dir, `${f}.ext`);
    execFileSync('sh', ['-c', `printf 'subjectAltName=DNS:${name}\\n' > ${ext}`]);
    ossl(
      'x509',
      '-req',
      '-in',
      `${f}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${f}.pem`,
      '-days',
      '2',
      '-extfile',
      ext,
    );
    leaves.set(name, {
      cert: readFileSync(join(dir, `${f}.pem`), 'utf8'),
      key: readFileSync(join(dir, `${f}.key`), 'utf8'),
    });
  });
  return {
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    leaf: (name) => {
      const l = leaves.get(name);
      if (!l) throw new Error(`no leaf for ${name}`);
      return l;
    },
  };
}

export async function listen(t: ExecutionContext, server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** TLS echo backend that first sends its name: "<name>\n", then echoes. */
export async function tlsBackend(
  t: ExecutionContext,
  pki: Pki,
  name: string,
  onSocket?: (s: tls.TLSSocket) => void,
): Promise<number> {
  const server = tls.createServer({ ...pki.leaf(name) }, (s) => {
    s.on('error', () => undefined);
    if (onSocket) return onSocket(s);
    s.write(`${name}\n`);
    s.pipe(s);
  });
  return listen(t, server);
}

/** HTTPS backend answering every request with its name (for curl). */
export async function httpsBackend(t: ExecutionContext, pki: Pki, name: string): Promise<number> {
  const server = tls.createServer({ ...pki.leaf(name) }, (s) => {
    s.on('error', () => undefined);
    s.once('data', () =>
      s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${name.length}\r\nconnection: close\r\n\r\n${name}`),
    );
  });
  return listen(t, server);
}

export interface GatewayHandle {
  gw: MeshGateway;
  port: number;
  registry: Registry;
}

export async function startGateway(
  t: ExecutionContext,
  routes: string[] | RouteSource,
  options: Partial<MeshGatewayOptions> = {},
  clock: Clock = systemClock,
): Promise<GatewayHandle> {
  const registry = new Registry();
  const routeSource = Array.isArray(routes) ? new StaticRouteSource(routes) : routes;
  const gw = new MeshGateway(
    { listen: { host: '127.0.0.1', port: 0 }, datacenter: 'dc1', drainTimeoutMs: 1000, ...options },
    { logger: silentLogger, clock, registry, routeSource },
  );
  await gw.start();
  t.teardown(() => gw.close());
  return { gw, port: gw.address().port, registry };
}

/** Read one line from a socket. */
export function readLine(s: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let acc = '';
    const onData = (d: Buffer): void => {
      acc += d.toString();
      const i = acc.indexOf('\n');
      if (i >= 0) {
        s.off('data', onData);
        s.off('error', reject);
        resolve(acc.slice(0, i));
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed before a line (got "${acc}")`)));
  });
}

/** TLS client through the gateway that verifies the backend's certificate for `servername`. */
export function tlsClient(
  port: number,
  servername: string | undefined,
  ca: string,
  socket?: Duplex,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const opts: tls.ConnectionOptions = { ca, host: '127.0.0.1', port };
    if (servername !== undefined) opts.servername = servername;
    else opts.checkServerIdentity = () => undefined;
    if (socket) opts.socket = socket;
    const s = tls.connect(opts, () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when the socket is closed (by the other side); with the error, if any. */
export function closed(s: net.Socket | tls.TLSSocket): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    s.on('error', (e) => (error = e));
    if (s.destroyed) return resolve(error);
    s.once('close', () => resolve(error));
  });
}

/**
 * A transport for tls.connect() that changes how the ClientHello travels: `dribble` sends it one
 * byte per TCP write with a pause between; `records` re-splits the handshake record into several.
 */
export function shapedTransport(port: number, how: { dribble?: boolean; records?: number }): Duplex {
  const raw = net.connect({ host: '127.0.0.1', port, noDelay: true });
  let first = true;
  const d = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      let out = chunk;
      if (first) {
        first = false;
        if (how.records) out = splitRecords(chunk, how.records);
        if (how.dribble) {
          void (async () => {
            for (let i = 0; i < out.length; i++) {
              raw.write(out.subarray(i, i + 1));
              await new Promise((r) => setTimeout(r, 1));
            }
            cb();
          })();
          return;
        }
      }
      raw.write(out, cb);
    },
    read() {},
    final(cb) {
      raw.end(cb);
    },
    destroy(err, cb) {
      raw.destroy();
      cb(err);
    },
  });
  raw.on('data', (c) => d.push(c));
  raw.on('end', () => d.push(null));
  raw.on('error', (e) => d.destroy(e));
  return d;
}

/** Re-split the first TLS record of `buf` into `n` records carrying the same handshake bytes. */
export function splitRecords(buf: Buffer, n: number): Buffer {
  const len = buf.readUInt16BE(3);
  const body = buf.subarray(5, 5 + len);
  const parts: Buffer[] = [];
  const size = Math.ceil(body.length / n);
  for (let i = 0; i < body.length; i += size) {
    const frag = body.subarray(i, i + size);
    const h = Buffer.from([0x16, buf[1]!, buf[2]!, 0, 0]);
    h.writeUInt16BE(frag.length, 3);
    parts.push(h, frag);
  }
  parts.push(buf.subarray(5 + len));
  return Buffer.concat(parts);
}

/** Capture the first ClientHello a TLS client sends for `servername` (no server answer). */
export async function captureHello(
  servername: string | undefined,
  extra: tls.ConnectionOptions = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    server.on('connection', (s) => {
      s.on('data', (c) => {
        chunks.push(c);
        const all = Buffer.concat(chunks);
        if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) {
          s.destroy();
          resolve(all.subarray(0, 5 + all.readUInt16BE(3)));
        }
      });
    });
  });
  const opts: tls.ConnectionOptions = { host: '127.0.0.1', port, ...extra };
  if (servername) opts.servername = servername;
  const c = tls.connect(opts);
  c.on('error', () => undefined);
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}
