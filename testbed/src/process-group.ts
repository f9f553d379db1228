// ProcessGroup: the testbed's real child processes (servers, gateways, sidecars, apps). Each one
// logs to its own file, is tracked by PID in a state file (so `testbed down` from another shell
// can stop it), and is stopped with SIGTERM then SIGKILL. When the owning process exits for any
// reason, every child it started is killed: nothing is left behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface StartSpec {
  name: string;
  command: string;
  args: readonly string[];
  env?: Readonly<Record<string, string>>;
  cwd?: string;
}

export interface ManagedProcess {
  readonly spec: StartSpec;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  readonly child: ChildProcess;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export class ProcessGroup {
  private readonly procs = new Map<string, ManagedProcess>();
  /** Every child this group started and that has not exited, named or not. */
  private readonly children = new Map<ChildProcess, string>();

  constructor(
    readonly logDir: string,
    private readonly onUnexpectedExit?: (p: ManagedProcess, code: number | string) => void,
  ) {
    mkdirSync(logDir, { recursive: true });
    installExitHook();
  }

  start(spec: StartSpec): ManagedProcess {
    if (this.procs.has(spec.name)) throw new Error(`process ${spec.name} is already running`);
    const logFile = join(this.logDir, `${spec.name}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn(spec.command, [...spec.args], {
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    if (child.pid === undefined) throw new Error(`could not start ${spec.name}: ${spec.command}`);
    live.add(child);
    this.children.set(child, spec.name);
    const exited = new Promise<number | string>((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.children.delete(child);
        const managed = this.procs.get(spec.name);
        if (managed?.child === child) this.procs.delete(spec.name);
        this.saveState();
        const result = code ?? signal ?? 'unknown';
        if (managed && !stopping.has(child)) this.onUnexpectedExit?.(managed, result);
        resolve(result);
      });
    });
    const managed: ManagedProcess = { spec, pid: child.pid, logFile, exited, child };
    this.procs.set(spec.name, managed);
    this.saveState();
    return managed;
  }

  get(name: string): ManagedProcess | undefined {
    return this.procs.get(name);
  }

  names(): string[] {
    return [...this.procs.keys()];
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when the process is gone. */
  async stop(name: string, graceMs = 5000): Promise<void> {
    const p = this.procs.get(name);
    if (!p) return;
    stopping.add(p.child);
    p.child.kill('SIGTERM');
    const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(timer);
  }

  /** SIGKILL at once: a crash, as far as the process is concerned. */
  async kill(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) return;
    stopping.add(p.child);
    p.child.kill('SIGKILL');
    await p.exited;
  }

  /** Stop everything, in reverse start order. */
  async stopAll(graceMs = 5000): Promise<void> {
    for (const name of [...this.procs.keys()].reverse()) await this.stop(name, graceMs);
    // Anything still running (a process replaced under its name, say) is killed outright, so
    // the caller's event loop can end and nothing is left behind.
    const rest = [...this.children.keys()];
    for (const c of rest) {
      stopping.add(c);
      c.kill('SIGKILL');
    }
    await Promise.all(
      rest.map(
        (c) =>
          new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r))),
      ),
    );
  }

  /** The last lines of a process's log, for failure messages. */
  tail(name: string, lines = 30): string {
    try {
      const text = readFileSync(join(this.logDir, `${name}.log`), 'utf8');
      return text
        .split('\n')
        .slice(-lines - 1)
        .join('\n');
    } catch {
      return '(no log)';
    }
  }

  private saveState(): void {
    const state = [...this.procs.values()].map((p) => ({ name: p.spec.name, pid: p.pid, log: p.logFile }));
    writeFileSync(join(this.logDir, 'processes.json'), JSON.stringify(state, null, 2));
  }
}

const stopping = new WeakSet<ChildProcess>();

/** Stop processes recorded by a ProcessGroup in another process (`testbed down`). */
export function stopRecorded(logDir: string): { name: string; pid: number; stopped: boolean }[] {
  let state: { name: string; pid: number }[];
  try {
    state = JSON.parse(readFileSync(join(logDir, 'processes.json'), 'utf8'));
  } catch {
    return [];
  }
  return state.map(({ name, pid }) => {
    try {
      process.kill(pid, 'SIGTERM');
      return { name, pid, stopped: true };
    } catch {
      return { name, pid, stopped: false };
    }
  });
}
