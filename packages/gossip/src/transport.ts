// Transports: how bytes leave and enter a node. One port carries UDP packets and one-request TCP
// streams (memberlist's NetTransport). MemoryNetwork is the deterministic fake for simulations:
// the same interface, with loss, latency, partitions and slow nodes, driven by an injected Clock.

import { createSocket, type Socket } from 'node:dgram';
import { createConnection, createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { type Clock, type TimerHandle } from '@meshfed/core';
import { NeedMore } from './msgpack.js';

export interface Addr {
  host: string;
  port: number;
}
export const addrKey = (a: Addr): string => `${a.host}:${a.port}`;

export interface TransportHandlers {
  packet(buf: Buffer, from: Addr): void;
  stream(conn: StreamConn): void;
}

export interface Transport {
  /** Start receiving; resolves with the bound address. */
  listen(handlers: TransportHandlers): Promise<Addr>;
  sendPacket(to: Addr, buf: Buffer): void;
  dial(to: Addr, timeoutMs: number): Promise<StreamConn>;
  close(): Promise<void>;
}

/** One side of a stream: write bytes, and read one message with an incremental parser. */
export class StreamConn {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  private waiter: (() => void) | undefined;

  constructor(
    readonly remote: Addr,
    private readonly sink: { write(b: Buffer): void; close(): void },
    private readonly clock: Clock,
    private readonly maxBytes = 21 * 1024 * 1024,
  ) {}

  /** Called by the transport when bytes arrive. */
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.maxBytes) this.ended = true;
    this.waiter?.();
  }
  /** Called by the transport at EOF or error. */
  end(): void {
    this.ended = true;
    this.waiter?.();
  }
  write(b: Buffer): void {
    this.sink.write(b);
  }
  close(): void {
    this.sink.close();
    this.end();
  }

  /** Parse one message; `parse` throws NeedMore until the bytes are there. */
  read<T>(parse: (b: Buffer) => T, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const box: { timer?: TimerHandle } = {};
      const attempt = (): boolean => {
        try {
          const v = parse(this.buf);
          this.clock.clearTimeout(box.timer);
          this.waiter = undefined;
          resolve(v);
          return true;
        } catch (err) {
          if (!(err instanceof NeedMore) || this.ended) {
            this.clock.clearTimeout(box.timer);
            this.waiter = undefined;
            reject(err instanceof NeedMore ? new Error('stream closed before a complete message') : err);
            return true;
          }
          return false;
        }
      };
      if (attempt()) return;
      box.timer = this.clock.setTimeout(() => {
        this.waiter = undefined;
        reject(new Error('stream read timed out'));
      }, timeoutMs);
      this.waiter = () => void attempt();
    });
  }
}

// ---- real sockets ----------------------------------------------------------------------------

export class NetTransport implements Transport {
  private udp: Socket | undefined;
  private tcp: Server | undefined;
  private readonly sockets = new Set<TcpSocket>();
  private closed = false;

  constructor(
    private readonly bind: Addr,
    private readonly clock: Clock,
  ) {}

  async listen(h: TransportHandlers): Promise<Addr> {
    const tcp = createServer((sock) => {
      this.track(sock);
      const conn = this.wrap(sock);
      h.stream(conn);
    });
    this.tcp = tcp;
    await new Promise<void>((res, rej) => {
      tcp.once('error', rej);
      tcp.listen(this.bind.port, this.bind.host, () => res());
    });
    const a = tcp.address();
    const port = typeof a === 'object' && a ? a.port : this.bind.port;
    const udp = createSocket('udp4');
    this.udp = udp;
    udp.on('message', (msg, rinfo) => h.packet(msg, { host: rinfo.address, port: rinfo.port }));
    udp.on('error', () => undefined);
    await new Promise<void>((res, rej) => {
      udp.once('error', rej);
      udp.bind(port, this.bind.host, () => res());
    });
    return { host: this.bind.host, port };
  }

  sendPacket(to: Addr, buf: Buffer): void {
    if (this.closed || !this.udp) return;
    try {
      this.udp.send(buf, to.port, to.host, () => undefined);
    } catch {
      // socket closing underneath a late timer: a lost packet, as UDP allows
    }
  }

  dial(to: Addr, timeoutMs: number): Promise<StreamConn> {
    return new Promise((resolve, reject) => {
      const sock = createConnection({ host: to.host, port: to.port });
      this.track(sock);
      const timer = this.clock.setTimeout(() => {
        sock.destroy();
        reject(new Error('dial timed out'));
      }, timeoutMs);
      sock.once('connect', () => {
        this.clock.clearTimeout(timer);
        resolve(this.wrap(sock));
      });
      sock.once('error', (err) => {
        this.clock.clearTimeout(timer);
        reject(err);
      });
    });
  }

  private track(sock: TcpSocket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
  }

  private wrap(sock: TcpSocket): StreamConn {
    const remote = { host: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 };
    const conn = new StreamConn(
      remote,
      { write: (b) => void sock.write(b), close: () => void sock.end() },
      this.clock,
    );
    sock.on('data', (d: Buffer) => conn.push(d));
    sock.on('end', () => conn.end());
    sock.on('error', () => conn.end());
    sock.on('close', () => conn.end());
    return conn;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    await Promise.all([
      new Promise<void>((res) => (this.tcp ? this.tcp.close(() => res()) : res())),
      new Promise<void>((res) => {
        if (!this.udp) return res();
        try {
          this.udp.close(() => res());
        } catch {
          res();
        }
      }),
    ]);
  }
}

// ---- in-memory network -----------------------------------------------------------------------

export interface MemoryNetworkOptions {
  /** Probability in [0,1] that a packet is lost. */
  loss?: number;
  /** One-way latency in ms. */
  latencyMs?: number;
  random?: () => number;
}

interface MemNode {
  handlers: TransportHandlers | undefined;
  addr: Addr;
}

/**
 * A deterministic network for many nodes in one process. Packets are delivered through the clock
 * after the latency; loss, partitions and "slow" (paused) nodes drop them. Streams are reliable
 * but fail to dial across a partition or to a closed node.
 */
export class MemoryNetwork {
  readonly nodes = new Map<string, MemNode>();
  loss: number;
  latencyMs: number;
  private readonly random: () => number;
  private readonly groups = new Map<string, number>();
  /** Nodes that currently drop everything (a paused process). */
  readonly paused = new Set<string>();
  /**
   * Slow nodes: inbound packets and stream data for these go through the node's gate, which holds
   * them while the node's event loop is stalled (queued, not dropped). See sim.ts StallGate.
   */
  readonly gates = new Map<string, { io(fn: () => void): void }>();
  packets = 0;
  bytes = 0;
  readonly bytesBySender = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    opts: MemoryNetworkOptions = {},
  ) {
    this.loss = opts.loss ?? 0;
    this.latencyMs = opts.latencyMs ?? 1;
    this.random = opts.random ?? Math.random;
  }

  transport(addr: Addr): Transport {
    return new MemoryTransport(this, addr, this.clock);
  }

  /** Put nodes into partition groups; nodes in different groups cannot reach each other. */
  partition(groups: string[][]): void {
    this.groups.clear();
    groups.forEach((g, i) => g.forEach((k) => this.groups.set(k, i)));
  }
  heal(): void {
    this.groups.clear();
  }
  /** One-way cuts, `"<from>><to>"` (host:port keys): packets on that direction only are lost. */
  readonly cuts = new Set<string>();
  reachable(from: string, to: string): boolean {
    if (this.paused.has(from) || this.paused.has(to)) return false;
    if (this.cuts.has(`${from}>${to}`)) return false;
    const a = this.groups.get(from);
    const b = this.groups.get(to);
    return a === undefined || b === undefined || a === b;
  }

  /** @internal */
  deliver(from: Addr, to: Addr, buf: Buffer): void {
    const fk = addrKey(from);
    const tk = addrKey(to);
    this.packets++;
    this.bytes += buf.length;
    this.bytesBySender.set(fk, (this.bytesBySender.get(fk) ?? 0) + buf.length);
    if (!this.reachable(fk, tk)) return;
    if (this.loss > 0 && this.random() < this.loss) return;
    const copy = Buffer.from(buf);
    this.clock.setTimeout(() => {
      const handle = (): void => {
        const n = this.nodes.get(tk);
        if (n?.handlers && !this.paused.has(tk)) n.handlers.packet(copy, from);
      };
      const gate = this.gates.get(tk);
      if (gate) gate.io(handle);
      else handle();
    }, this.latencyMs);
  }

  /** @internal */
  connect(from: Addr, to: Addr): StreamConn | undefined {
    const fk = addrKey(from);
    const tk = addrKey(to);
    const n = this.nodes.get(tk);
    if (!n?.handlers || !this.reachable(fk, tk)) return undefined;
    const lat = this.latencyMs;
    const clock = this.clock;
    const ends: { a?: StreamConn; b?: StreamConn } = {};
    // deliver to the end at node `key` after the latency, through that node's gate if it is slow
    const at = (key: string, fn: () => void): void => {
      clock.setTimeout(() => {
        const gate = this.gates.get(key);
        if (gate) gate.io(fn);
        else fn();
      }, lat);
    };
    const send = (key: string, target: () => StreamConn | undefined, bytes: Buffer): void => {
      this.bytes += bytes.length;
      this.bytesBySender.set(fk, (this.bytesBySender.get(fk) ?? 0) + bytes.length);
      const copy = Buffer.from(bytes);
      at(key, () => target()?.push(copy));
    };
    ends.a = new StreamConn(
      to,
      { write: (x) => send(tk, () => ends.b, x), close: () => at(tk, () => ends.b?.end()) },
      clock,
    );
    ends.b = new StreamConn(
      from,
      { write: (x) => send(fk, () => ends.a, x), close: () => at(fk, () => ends.a?.end()) },
      clock,
    );
    const handlers = n.handlers;
    const server = ends.b;
    at(tk, () => handlers.stream(server));
    return ends.a;
  }
}

class MemoryTransport implements Transport {
  constructor(
    private readonly net: MemoryNetwork,
    private readonly addr: Addr,
    private readonly clock: Clock,
  ) {}
  listen(h: TransportHandlers): Promise<Addr> {
    this.net.nodes.set(addrKey(this.addr), { handlers: h, addr: this.addr });
    return Promise.resolve(this.addr);
  }
  sendPacket(to: Addr, buf: Buffer): void {
    this.net.deliver(this.addr, to, buf);
  }
  dial(to: Addr, timeoutMs: number): Promise<StreamConn> {
    const c = this.net.connect(this.addr, to);
    if (c) return Promise.resolve(c);
    return new Promise((_, reject) =>
      this.clock.setTimeout(() => reject(new Error('dial failed: unreachable')), Math.min(timeoutMs, 1000)),
    );
  }
  close(): Promise<void> {
    this.net.nodes.delete(addrKey(this.addr));
    return Promise.resolve();
  }
}
