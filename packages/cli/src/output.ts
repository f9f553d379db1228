// How commands talk to people and scripts: aligned tables by default, JSON with --json, errors on
// stderr with what to do. Streams are injected so commands can be run and checked in-process.

import type { Writable } from 'node:stream';

export interface Column<R> {
  header: string;
  value: (row: R) => string | number | boolean | undefined | null;
  align?: 'left' | 'right';
}

export class Output {
  constructor(
    readonly json: boolean,
    private readonly stdout: Writable = process.stdout,
    private readonly stderr: Writable = process.stderr,
  ) {}

  line(text = ''): void {
    this.stdout.write(`${text}\n`);
  }

  error(text: string): void {
    this.stderr.write(`${text}\n`);
  }

  /** Progress for things that take seconds; goes to stderr so stdout stays parseable. */
  progress(text: string): void {
    if (!this.json) this.stderr.write(`${text}\n`);
  }

  data(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** A table for humans, or the rows as JSON with --json (`jsonValue` picks what scripts get). */
  table<R>(rows: readonly R[], columns: readonly Column<R>[], jsonValue: unknown = rows): void {
    if (this.json) return this.data(jsonValue);
    this.stdout.write(renderTable(rows, columns));
  }
}

export function renderTable<R>(rows: readonly R[], columns: readonly Column<R>[]): string {
  const cells = rows.map((r) => columns.map((c) => fmt(c.value(r))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const render = (values: string[]) =>
    values
      .map((v, i) => (columns[i]!.align === 'right' ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const lines = [render(columns.map((c) => c.header)), ...cells.map(render)];
  return `${lines.join('\n')}\n`;
}

function fmt(v: string | number | boolean | undefined | null): string {
  if (v === undefined || v === null || v === '') return '-';
  return String(v);
}
