// The check runner: runs the checks defined on this server's own node (TCP, HTTP, TTL, alias) on
// the injected clock and writes status changes to the store. Also deregisters services whose check
// stayed critical past DeregisterCriticalServiceAfter. Never writes when nothing changed, so
// blocking queries only wake for real transitions.

import { connect } from 'node:net';
import http from 'node:http';
import https from 'node:https';
import { parseDuration, type Clock, type Logger, type TimerHandle } from '@meshfed/core';
import type { Store } from '@meshfed/store';
import {
  CatalogReader,
  T_CHECKS,
  checkOps,
  deregisterServiceOps,
  type CheckStatus,
  type CheckValue,
} from './catalog.js';

const ms = (d: string | undefined, fallback: number): number => {
  if (!d) return fallback;
  const r = parseDuration(d);
  return r.ok ? r.value : fallback;
};

const severity: Record<CheckStatus, number> = { passing: 0, warning: 1, critical: 2 };

interface Running {
  check: CheckValue;
  timer?: TimerHandle;
  abort: AbortController;
  criticalSince?: number;
}

export class CheckRunner {
  private readonly running = new Map<string, Running>();
  private reaper: TimerHandle | undefined;
  private closed = false;

  constructor(
    private readonly node: string,
    private readonly deps: {
      store: Store;
      clock: Clock;
      logger: Logger;
      onDeregister?: (serviceId: string) => void;
    },
  ) {}

  start(): void {
    for (const c of new CatalogReader(this.deps.store).nodeChecks(this.node)) this.sync(c);
    this.reaper = this.deps.clock.setInterval(() => this.reapCritical(), 1000);
    this.reaper.unref();
  }

  close(): void {
    this.closed = true;
    this.deps.clock.clearInterval(this.reaper);
    for (const id of [...this.running.keys()]) this.stop(id);
  }

  /** (Re)start the runner of a check just registered or loaded. */
  sync(check: CheckValue): void {
    this.stop(check.CheckID);
    if (this.closed || check.Node !== this.node) return;
    const r: Running = { check, abort: new AbortController() };
    if (check.Status === 'critical') r.criticalSince = this.deps.clock.monotonic();
    this.running.set(check.CheckID, r);
    const d = check.Definition;
    if (d.TCP || d.HTTP) {
      const interval = ms(d.Interval, 10_000);
      const loop = (): void => {
        if (r.abort.signal.aborted) return;
        void this.probe(r).finally(() => {
          if (!r.abort.signal.aborted) r.timer = this.deps.clock.setTimeout(loop, interval);
        });
      };
      r.timer = this.deps.clock.setTimeout(loop, 0);
    } else if (d.TTL) {
      this.armTtl(r);
    } else if (d.AliasService) {
      void this.aliasLoop(r, d.AliasService);
    }
  }

  stop(checkId: string): void {
    const r = this.running.get(checkId);
    if (!r) return;
    r.abort.abort();
    this.deps.clock.clearTimeout(r.timer);
    this.running.delete(checkId);
  }

  /** TTL check heartbeat (agent check pass/warn/fail/update). */
  ttlUpdate(checkId: string, status: CheckStatus, output: string): void {
    const r = this.running.get(checkId);
    if (r?.check.Definition.TTL) this.armTtl(r);
    this.setStatus(checkId, status, output);
  }

  private armTtl(r: Running): void {
    this.deps.clock.clearTimeout(r.timer);
    const ttl = ms(r.check.Definition.TTL, 30_000);
    r.timer = this.deps.clock.setTimeout(() => {
      if (!r.abort.signal.aborted) this.setStatus(r.check.CheckID, 'critical', 'TTL expired');
    }, ttl);
  }

  private async aliasLoop(r: Running, serviceId: string): Promise<void> {
    const reader = new CatalogReader(this.deps.store);
    while (!r.abort.signal.aborted) {
      const svc = reader.service(this.node, serviceId);
      const keys = svc
        ? [
            { table: T_CHECKS, secondary: svc.value.Service },
            { table: 'services', key: `${this.node}/${serviceId}` },
          ]
        : [{ table: 'services', key: `${this.node}/${serviceId}` }];
      const from = this.deps.store.indexOf(keys);
      let worst: CheckStatus = 'passing';
      let output = `All checks passing for service "${serviceId}"`;
      if (!svc) {
        worst = 'critical';
        output = `Service "${serviceId}" is not registered`;
      } else {
        for (const c of reader.nodeChecks(this.node)) {
          if (c.ServiceID !== serviceId || c.Type === 'alias') continue;
          if (severity[c.Status] > severity[worst]) {
            worst = c.Status;
            output = `Aliased check "${c.CheckID}" is ${c.Status}`;
          }
        }
      }
      this.setStatus(r.check.CheckID, worst, output);
      try {
        await this.deps.store.waitFor(keys, from, r.abort.signal);
      } catch {
        return;
      }
    }
  }

  private async probe(r: Running): Promise<void> {
    const d = r.check.Definition;
    const timeout = ms(d.Timeout, 10_000);
    let status: CheckStatus;
    let output: string;
    try {
      if (d.TCP) {
        await tcpProbe(d.TCP, timeout, this.deps.clock);
        status = 'passing';
        output = `TCP connect ${d.TCP}: Success`;
      } else {
        const code = await httpProbe(
          d.HTTP!,
          d.Method ?? 'GET',
          timeout,
          d.TLSSkipVerify === true,
          this.deps.clock,
        );
        status = code >= 200 && code < 300 ? 'passing' : code === 429 ? 'warning' : 'critical';
        output = `HTTP ${d.Method ?? 'GET'} ${d.HTTP}: ${code}`;
      }
    } catch (err) {
      status = 'critical';
      output = `${d.TCP ? `TCP connect ${d.TCP}` : `HTTP ${d.HTTP}`}: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (!r.abort.signal.aborted) this.setStatus(r.check.CheckID, status, output);
  }

  setStatus(checkId: string, status: CheckStatus, output: string): void {
    if (this.closed) return;
    const row = new CatalogReader(this.deps.store).check(this.node, checkId);
    if (!row) return;
    const r = this.running.get(checkId);
    if (r) {
      if (status === 'critical') r.criticalSince ??= this.deps.clock.monotonic();
      else delete r.criticalSince;
    }
    if (row.value.Status === status && row.value.Output === output) return;
    const next = { ...row.value, Status: status, Output: output };
    if (r) r.check = next;
    this.deps.store.write(checkOps(next));
    if (row.value.Status !== status)
      this.deps.logger.debug({ check: checkId, from: row.value.Status, to: status }, 'check status changed');
  }

  private reapCritical(): void {
    const now = this.deps.clock.monotonic();
    for (const r of [...this.running.values()]) {
      const after = r.check.Definition.DeregisterCriticalServiceAfter;
      if (!after || r.criticalSince === undefined || !r.check.ServiceID) continue;
      if (now - r.criticalSince < ms(after, Infinity)) continue;
      this.deps.logger.info(
        { service: r.check.ServiceID, check: r.check.CheckID },
        'deregistering service: check critical past DeregisterCriticalServiceAfter',
      );
      const sid = r.check.ServiceID;
      for (const c of new CatalogReader(this.deps.store).nodeChecks(this.node))
        if (c.ServiceID === sid) this.stop(c.CheckID);
      this.deps.store.write(deregisterServiceOps(this.deps.store, this.node, sid));
      this.deps.onDeregister?.(sid);
    }
  }
}

function tcpProbe(target: string, timeoutMs: number, clock: Clock): Promise<void> {
  const i = target.lastIndexOf(':');
  const host = target.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(target.slice(i + 1));
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    const t = clock.setTimeout(() => {
      sock.destroy();
      reject(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clock.clearTimeout(t);
      sock.destroy();
      resolve();
    });
    sock.once('error', (err) => {
      clock.clearTimeout(t);
      reject(err);
    });
  });
}

function httpProbe(
  url: string,
  method: string,
  timeoutMs: number,
  insecure: boolean,
  clock: Clock,
): Promise<number> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      { method, rejectUnauthorized: !insecure, headers: { 'user-agent': 'meshfed health check' } },
      (res) => {
        res.resume();
        res.on('end', () => {
          clock.clearTimeout(t);
          resolve(res.statusCode ?? 0);
        });
      },
    );
    const t = clock.setTimeout(() => req.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    req.once('error', (err) => {
      clock.clearTimeout(t);
      reject(err);
    });
    req.end();
  });
}
