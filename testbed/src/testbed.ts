// The testbed: a federation of datacenters on one machine, as real processes, started from the same
// YAML files an operator writes. `up` follows the steps an operator would take, in order:
//
//   1. a `meshfed server` per DC (the first config is the primary)
//   2. a join token from the primary; `meshfed join` in every secondary (no key copied by hand)
//   3. config entries written in the primary (they replicate to every DC)
//   4. a `meshfed gateway` per DC
//   5. the apps (dashboard, counting) and a `meshfed proxy` sidecar beside each
//   6. wait until the dashboard's call crosses the gateways and an answer comes back
//
// The demo (`npm start`) and the end-to-end suite both drive this class.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfigOrThrow, type MeshfedConfig } from '@meshfed/config';
import { ProcessGroup, type ManagedProcess, type StartSpec } from './process-group.js';

const repoRoot = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
export const meshfedBin = join(repoRoot, 'packages/cli/dist/src/bin.js');
const appsDir = fileURLToPath(new URL('./apps/', import.meta.url));

export interface DatacenterSpec {
  /** The YAML file this DC runs from. */
  configFile: string;
  config: MeshfedConfig;
  httpAddr: string;
}

export interface TestbedOptions {
  /** YAML files, one per DC; the one whose datacenter is the primary is started first. */
  configFiles: readonly string[];
  /** Config entries (YAML/JSON files) written in the primary after the join. */
  entryFiles?: readonly string[];
  /** Where data dirs and logs go. */
  workDir: string;
  /** Called for each step, for a progress display. */
  progress?: (event: ProgressEvent) => void;
  /** Extra `--set key=value` overrides for every daemon. */
  overrides?: readonly string[];
}

export type ProgressEvent =
  | { kind: 'step'; step: number; total: number; title: string }
  | { kind: 'done'; step: number; ms: number; detail?: string | undefined };

export interface CallResult {
  ok: boolean;
  answer?: { count: number; datacenter: string; instance: string };
  error?: string;
  ms: number;
}

const STEPS = 6;

export class Testbed {
  readonly dcs: DatacenterSpec[];
  readonly group: ProcessGroup;
  private readonly workDir: string;

  constructor(private readonly options: TestbedOptions) {
    this.workDir = resolve(options.workDir);
    mkdirSync(this.workDir, { recursive: true });
    this.group = new ProcessGroup(join(this.workDir, 'logs'));
    const dcs = options.configFiles.map((file) => {
      const config = loadConfigOrThrow({ files: [file] });
      return { configFile: resolve(file), config, httpAddr: `http://127.0.0.1:${config.ports.http}` };
    });
    const primaryName = dcs[0]?.config.primary_datacenter;
    dcs.sort(
      (a, b) => Number(b.config.datacenter === primaryName) - Number(a.config.datacenter === primaryName),
    );
    this.dcs = dcs;
  }

  get primary(): DatacenterSpec {
    const p = this.dcs[0];
    if (!p) throw new Error('the testbed needs at least one datacenter config');
    return p;
  }

  dc(name: string): DatacenterSpec {
    const d = this.dcs.find((x) => x.config.datacenter === name);
    if (!d) throw new Error(`no datacenter ${name} in the testbed`);
    return d;
  }

  /** Start everything and wait until a call from the dashboard crosses the federation. */
  async up(signal?: AbortSignal): Promise<void> {
    const step = this.stepper();

    await step(1, 'starting one meshfed server per datacenter', async () => {
      for (const dc of this.dcs) this.startServer(dc);
      for (const dc of this.dcs) await this.waitForServer(dc, signal);
      return this.dcs.map((d) => `${d.config.datacenter} ${d.httpAddr}`).join(', ');
    });

    await step(2, 'joining the secondaries to the primary with a one-time token', async () => {
      for (const dc of this.dcs.slice(1)) await this.join(dc);
      return `${this.dcs.length - 1} joined`;
    });

    await step(3, 'writing config entries in the primary', async () => {
      for (const file of this.options.entryFiles ?? []) {
        await this.meshfed(['config', 'write', file, '--http-addr', this.primary.httpAddr]);
      }
      await this.waitForReplication(signal);
      return `${(this.options.entryFiles ?? []).length} entries, replicated`;
    });

    await step(4, 'starting one mesh gateway per datacenter', async () => {
      for (const dc of this.dcs) this.startGateway(dc);
      for (const dc of this.dcs) await this.waitForGateway(dc, signal);
      return this.dcs.map((d) => `${d.config.datacenter} ${d.config.gateway.listen}`).join(', ');
    });

    await step(5, 'starting the apps and their sidecars', async () => {
      for (const dc of this.dcs) this.startApps(dc);
      return `${this.group.names().filter((n) => n.startsWith('app-')).length} apps`;
    });

    await step(6, 'waiting for the first call to cross the gateways', async () => {
      const dashboard = this.dashboardDc();
      if (!dashboard) return 'no dashboard in this topology';
      const answer = await waitUntil(
        async () => {
          const r = await this.callDashboard();
          return r.ok ? r : undefined;
        },
        60_000,
        signal,
      );
      return `answered by ${answer.answer?.datacenter} in ${answer.ms} ms`;
    });
  }

  private stepper(): (n: number, title: string, body: () => Promise<string | void>) => Promise<void> {
    const progress = this.options.progress;
    return async (n, title, body) => {
      progress?.({ kind: 'step', step: n, total: STEPS, title });
      const started = performance.now();
      const detail = await body();
      progress?.({
        kind: 'done',
        step: n,
        ms: Math.round(performance.now() - started),
        detail: detail || undefined,
      });
    };
  }

  async down(): Promise<void> {
    await this.group.stopAll(5000);
  }

  // --- the parts --------------------------------------------------------------------------------

  dataDir(dc: DatacenterSpec): string {
    return join(this.workDir, 'data', dc.config.datacenter);
  }

  private daemonArgs(dc: DatacenterSpec): string[] {
    const sets = [`data_dir=${this.dataDir(dc)}`, ...(this.options.overrides ?? [])];
    return ['--config', dc.configFile, ...sets.flatMap((s) => ['--set', s]), '--log-level', 'info'];
  }

  startServer(dc: DatacenterSpec): ManagedProcess {
    return this.group.start({
      name: `server-${dc.config.datacenter}`,
      command: process.execPath,
      args: [meshfedBin, 'server', ...this.daemonArgs(dc)],
    });
  }

  startGateway(dc: DatacenterSpec): ManagedProcess {
    return this.group.start({
      name: `gateway-${dc.config.datacenter}`,
      command: process.execPath,
      args: [meshfedBin, 'gateway', ...this.daemonArgs(dc)],
    });
  }

  /** The apps the white paper's story needs, each beside its sidecar. */
  startApps(dc: DatacenterSpec): void {
    for (const svc of dc.config.services) {
      if (svc.name !== 'counting' && svc.name !== 'dashboard') continue;
      this.group.start(this.appSpec(dc, svc));
      if (svc.connect.sidecar_service.enabled) this.startSidecar(dc, svc.id || svc.name);
    }
  }

  private appSpec(dc: DatacenterSpec, svc: MeshfedConfig['services'][number]): StartSpec {
    const id = svc.id || svc.name;
    if (svc.name === 'dashboard') {
      const upstream = svc.connect.sidecar_service.proxy.upstreams[0];
      return {
        name: `app-${id}`,
        command: process.execPath,
        args: [
          join(appsDir, 'dashboard.js'),
          '--port',
          String(svc.port),
          '--upstream',
          `http://127.0.0.1:${upstream?.local_bind_port ?? 9191}/`,
        ],
      };
    }
    return {
      name: `app-${id}`,
      command: process.execPath,
      args: [
        join(appsDir, 'counting.js'),
        '--port',
        String(svc.port),
        '--datacenter',
        dc.config.datacenter,
        '--instance',
        id,
      ],
    };
  }

  /** Adds a DC to the testbed (not started): for joining one at runtime. */
  addDatacenter(configFile: string): DatacenterSpec {
    const config = loadConfigOrThrow({ files: [configFile] });
    const spec = {
      configFile: resolve(configFile),
      config,
      httpAddr: `http://127.0.0.1:${config.ports.http}`,
    };
    this.dcs.push(spec);
    return spec;
  }

  /** Restarts one app (not its sidecar), e.g. after stopping it to force a failover. */
  startAppOnly(dc: DatacenterSpec, serviceId: string): void {
    const svc = dc.config.services.find((s) => (s.id || s.name) === serviceId);
    if (!svc) throw new Error(`no service ${serviceId} in ${dc.config.datacenter}`);
    this.group.start(this.appSpec(dc, svc));
  }

  startSidecar(dc: DatacenterSpec, serviceId: string): ManagedProcess {
    return this.group.start({
      name: `proxy-${serviceId}`,
      command: process.execPath,
      args: [meshfedBin, 'proxy', '--sidecar-for', serviceId, ...this.daemonArgs(dc)],
    });
  }

  async join(dc: DatacenterSpec): Promise<void> {
    const created = JSON.parse(
      await this.meshfed([
        'federation',
        'token',
        'create',
        '--ttl',
        '10m',
        '--json',
        '--http-addr',
        this.primary.httpAddr,
      ]),
    ) as { token: string };
    const primaryServer = `127.0.0.1:${this.primary.config.ports.server}`;
    await this.meshfed(['join', primaryServer, '--token', created.token, '--http-addr', dc.httpAddr]);
  }

  dashboardDc(): DatacenterSpec | undefined {
    return this.dcs.find((d) => d.config.services.some((s) => s.name === 'dashboard'));
  }

  /** One call from the dashboard app to counting, through the mesh. */
  async callDashboard(): Promise<CallResult> {
    const dc = this.dashboardDc();
    const svc = dc?.config.services.find((s) => s.name === 'dashboard');
    if (!svc) return { ok: false, error: 'no dashboard', ms: 0 };
    try {
      const res = await fetch(`http://127.0.0.1:${svc.port}/api/count`, {
        signal: AbortSignal.timeout(8000),
      });
      return (await res.json()) as CallResult;
    } catch (err) {
      return { ok: false, error: (err as Error).message, ms: 0 };
    }
  }

  /** Runs the meshfed CLI and returns its stdout; a failure carries its stderr. */
  meshfed(args: readonly string[], timeoutMs = 30_000): Promise<string> {
    return new Promise((resolvePromise, reject) => {
      execFile(
        process.execPath,
        [meshfedBin, ...args],
        { timeout: timeoutMs, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          // join tokens are secrets: never in an error message
          const shown = args.map((a, i) => (args[i - 1] === '--token' ? '<token>' : a)).join(' ');
          if (err) reject(new Error(`meshfed ${shown} failed: ${stderr || err.message}`));
          else resolvePromise(stdout);
        },
      );
    });
  }

  async api<T>(dc: DatacenterSpec, path: string): Promise<T> {
    const res = await fetch(`${dc.httpAddr}${path}`, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`${dc.config.datacenter} ${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  private async waitForServer(dc: DatacenterSpec, signal?: AbortSignal): Promise<void> {
    const name = `server-${dc.config.datacenter}`;
    await waitUntil(
      async () => {
        if (!this.group.get(name)) {
          throw new Error(`${name} exited during start:\n${this.group.tail(name)}`);
        }
        try {
          const res = await fetch(`${dc.httpAddr}/v1/status/leader`, { signal: AbortSignal.timeout(1000) });
          return res.ok ? true : undefined;
        } catch {
          return undefined;
        }
      },
      30_000,
      signal,
    );
  }

  private async waitForGateway(dc: DatacenterSpec, signal?: AbortSignal): Promise<void> {
    const name = `gateway-${dc.config.datacenter}`;
    await waitUntil(
      async () => {
        if (!this.group.get(name)) throw new Error(`${name} exited during start:\n${this.group.tail(name)}`);
        try {
          const res = await fetch(`http://${dc.config.gateway.admin}/ready`, {
            signal: AbortSignal.timeout(1000),
          });
          return res.ok ? true : undefined;
        } catch {
          return undefined;
        }
      },
      30_000,
      signal,
    );
  }

  /** Until every secondary reports the primary's content hashes. */
  async waitForReplication(signal?: AbortSignal): Promise<void> {
    if (this.dcs.length < 2) return;
    await waitUntil(
      async () => {
        const status = await this.federationStatus();
        const secondaries = status.filter((s) => s.role === 'secondary');
        return secondaries.length === this.dcs.length - 1 && secondaries.every((s) => s.inSync)
          ? true
          : undefined;
      },
      30_000,
      signal,
    );
  }

  async federationStatus(): Promise<FederationStatusRow[]> {
    const out = await this.meshfed(['federation', 'status', '--json', '--http-addr', this.primary.httpAddr]);
    return (JSON.parse(out) as { datacenters: FederationStatusRow[] }).datacenters;
  }
}

export interface FederationStatusRow {
  datacenter: string;
  role: 'primary' | 'secondary';
  reachable: boolean;
  inSync: boolean;
  lagMs?: number;
  lastError?: string;
}

/** Polls `probe` until it returns a value; throws with the last error after `timeoutMs`. */
export async function waitUntil<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  signal?: AbortSignal,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// --- configs for tests: the same shape as configs/, on free ports ------------------------------

export interface GeneratedDc {
  name: string;
  ports: { http: number; server: number; serf: number; gateway: number; gatewayAdmin: number };
  services: {
    name: string;
    id: string;
    port: number;
    sidecarPort: number;
    upstreamPort?: number;
    upstreamDatacenter?: string;
  }[];
}

/** Writes one YAML file per DC (dc1 primary) in `dir`, mirroring configs/dc*.yaml. */
export function writeFederationConfigs(
  dir: string,
  dcs: readonly GeneratedDc[],
  opts: {
    primary?: { name: string; serf: number };
    /** false: secondaries get no gossip.join; a token join must find the pool (default true). */
    gossipJoin?: boolean;
  } = {},
): string[] {
  mkdirSync(dir, { recursive: true });
  const primary = opts.primary?.name ?? dcs[0]!.name;
  const primarySerf = opts.primary?.serf ?? dcs[0]!.ports.serf;
  return dcs.map((dc) => {
    const lines = [
      `datacenter: ${dc.name}`,
      `primary_datacenter: ${primary}`,
      `node_name: ${dc.name}-server-1`,
      `data_dir: ${join(dir, 'data', dc.name)}`,
      `bind_addr: 127.0.0.1`,
      `ports:`,
      `  http: ${dc.ports.http}`,
      `  server: ${dc.ports.server}`,
      `  serf_wan: ${dc.ports.serf}`,
      `intentions:`,
      `  default_policy: deny`,
      `gossip:`,
      `  profile: local`,
      ...(dc.name === primary || opts.gossipJoin === false
        ? []
        : [`  join:`, `    - 127.0.0.1:${primarySerf}`]),
      `gateway:`,
      `  listen: 127.0.0.1:${dc.ports.gateway}`,
      `  wan_address: 127.0.0.1:${dc.ports.gateway}`,
      `  admin: 127.0.0.1:${dc.ports.gatewayAdmin}`,
      `services:`,
      ...dc.services.flatMap((s) => [
        `  - name: ${s.name}`,
        `    id: ${s.id}`,
        `    port: ${s.port}`,
        `    check:`,
        `      tcp: 127.0.0.1:${s.port}`,
        `      interval: 1s`,
        `    connect:`,
        `      sidecar_service:`,
        `        port: ${s.sidecarPort}`,
        ...(s.upstreamPort
          ? [
              `        proxy:`,
              `          upstreams:`,
              `            - destination_name: counting`,
              `              datacenter: ${s.upstreamDatacenter ?? dcs[1]?.name ?? primary}`,
              `              local_bind_port: ${s.upstreamPort}`,
              `              mesh_gateway:`,
              `                mode: local`,
            ]
          : []),
      ]),
    ];
    const file = join(dir, `${dc.name}.yaml`);
    writeFileSync(file, lines.join('\n') + '\n');
    return file;
  });
}

export function readJsonFile<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}
