// A small Prometheus registry: counters, gauges and histograms with label children bound once, so
// the hot path (`child.inc()`) is one addition. Names are snake_case with unit suffixes; label
// values must come from bounded sets (route class, reason, datacenter), never raw input.
//
// Snapshots exist so that several processes (gateway workers) can report into one /metrics page:
// each worker sends snapshot(), the primary renders renderMetrics(merged) — counters and histograms
// add up, gauges add up too (active connections per worker sum to the total).

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface SeriesSnapshot {
  labels: string[];
  value: number;
  /** Histograms only: cumulative counts per bucket, and the sum. */
  buckets?: number[];
  sum?: number;
}

export interface MetricSnapshot {
  name: string;
  help: string;
  type: MetricType;
  labelNames: string[];
  bucketBounds?: number[];
  series: SeriesSnapshot[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

abstract class Metric<Child> {
  protected readonly children = new Map<string, Child>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!NAME_RE.test(name)) throw new Error(`invalid metric name ${name}`);
    for (const l of labelNames) if (!NAME_RE.test(l)) throw new Error(`invalid label name ${l}`);
  }
  protected abstract make(values: string[]): Child;
  /** The child for these label values (created once, then cached: keep a reference on hot paths). */
  labels(...values: string[]): Child {
    if (values.length !== this.labelNames.length)
      throw new Error(`${this.name} takes ${this.labelNames.length} label values, got ${values.length}`);
    const key = values.join('\u0000');
    let child = this.children.get(key);
    if (!child) {
      child = this.make(values);
      this.children.set(key, child);
    }
    return child;
  }
  abstract snapshot(): MetricSnapshot;
}

export class CounterChild {
  value = 0;
  constructor(readonly labelValues: string[]) {}
  inc(n = 1): void {
    this.value += n;
  }
}

export class Counter extends Metric<CounterChild> {
  protected make(values: string[]): CounterChild {
    return new CounterChild(values);
  }
  inc(n = 1): void {
    this.labels().inc(n);
  }
  /** Current value for the given labels (0 when never incremented). */
  get(...values: string[]): number {
    return this.children.get(values.join('\u0000'))?.value ?? 0;
  }
  snapshot(): MetricSnapshot {
    return {
      name: this.name,
      help: this.help,
      type: 'counter',
      labelNames: [...this.labelNames],
      series: [...this.children.values()].map((c) => ({ labels: c.labelValues, value: c.value })),
    };
  }
}

export class GaugeChild {
  value = 0;
  constructor(readonly labelValues: string[]) {}
  set(v: number): void {
    this.value = v;
  }
  inc(n = 1): void {
    this.value += n;
  }
  dec(n = 1): void {
    this.value -= n;
  }
}

export class Gauge extends Metric<GaugeChild> {
  private collector: (() => void) | undefined;
  protected make(values: string[]): GaugeChild {
    return new GaugeChild(values);
  }
  set(v: number): void {
    this.labels().set(v);
  }
  inc(n = 1): void {
    this.labels().inc(n);
  }
  dec(n = 1): void {
    this.labels().dec(n);
  }
  get(...values: string[]): number {
    return this.children.get(values.join('\u0000'))?.value ?? 0;
  }
  /** Called before every snapshot, to set values that are read rather than counted. */
  onCollect(fn: () => void): this {
    this.collector = fn;
    return this;
  }
  /** Forget all label children (for gauges whose label sets change, such as per-DC lag). */
  reset(): void {
    this.children.clear();
  }
  snapshot(): MetricSnapshot {
    this.collector?.();
    return {
      name: this.name,
      help: this.help,
      type: 'gauge',
      labelNames: [...this.labelNames],
      series: [...this.children.values()].map((c) => ({ labels: c.labelValues, value: c.value })),
    };
  }
}

export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labelValues: string[],
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }
}

export const defaultBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram extends Metric<HistogramChild> {
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly bounds: readonly number[] = defaultBuckets,
  ) {
    super(name, help, labelNames);
  }
  protected make(values: string[]): HistogramChild {
    return new HistogramChild(values, this.bounds);
  }
  observe(v: number): void {
    this.labels().observe(v);
  }
  snapshot(): MetricSnapshot {
    return {
      name: this.name,
      help: this.help,
      type: 'histogram',
      labelNames: [...this.labelNames],
      bucketBounds: [...this.bounds],
      series: [...this.children.values()].map((c) => {
        let acc = 0;
        const buckets = Array.from(c.counts, (n) => (acc += n));
        return { labels: c.labelValues, value: c.count, buckets, sum: c.sum };
      }),
    };
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric<unknown>>();

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets?: readonly number[],
  ): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  private add<M extends Metric<unknown>>(m: M): M {
    const existing = this.metrics.get(m.name);
    if (existing) {
      if (existing.constructor !== m.constructor)
        throw new Error(`metric ${m.name} registered twice with different types`);
      return existing as M;
    }
    this.metrics.set(m.name, m);
    return m;
  }

  snapshot(): MetricSnapshot[] {
    return [...this.metrics.values()].map((m) => m.snapshot());
  }

  /** Prometheus text exposition format 0.0.4. */
  render(): string {
    return renderMetrics(this.snapshot());
  }
}

/** Add several snapshots (from several processes) into one, series matched by labels. */
export function mergeSnapshots(lists: readonly MetricSnapshot[][]): MetricSnapshot[] {
  const out = new Map<string, MetricSnapshot>();
  for (const list of lists) {
    for (const m of list) {
      let acc = out.get(m.name);
      if (!acc) {
        acc = { ...m, series: [] };
        out.set(m.name, acc);
      }
      for (const s of m.series) {
        const key = s.labels.join('\u0000');
        const same = acc.series.find((x) => x.labels.join('\u0000') === key);
        if (!same) {
          acc.series.push({ ...s, ...(s.buckets ? { buckets: [...s.buckets] } : {}) });
          continue;
        }
        same.value += s.value;
        if (s.buckets && same.buckets) s.buckets.forEach((n, i) => (same.buckets![i]! += n));
        if (s.sum !== undefined) same.sum = (same.sum ?? 0) + s.sum;
      }
    }
  }
  return [...out.values()];
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`);
  if (extra) parts.push(`${extra[0]}="${extra[1]}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function num(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return Number.isNaN(v) ? 'NaN' : String(v);
}

export function renderMetrics(snapshots: readonly MetricSnapshot[]): string {
  const lines: string[] = [];
  for (const m of snapshots) {
    lines.push(`# HELP ${m.name} ${m.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    lines.push(`# TYPE ${m.name} ${m.type}`);
    for (const s of m.series) {
      if (m.type !== 'histogram') {
        lines.push(`${m.name}${labelText(m.labelNames, s.labels)} ${num(s.value)}`);
        continue;
      }
      const bounds = m.bucketBounds ?? [];
      bounds.forEach((b, i) =>
        lines.push(
          `${m.name}_bucket${labelText(m.labelNames, s.labels, ['le', num(b)])} ${s.buckets?.[i] ?? 0}`,
        ),
      );
      lines.push(`${m.name}_bucket${labelText(m.labelNames, s.labels, ['le', '+Inf'])} ${s.value}`);
      lines.push(`${m.name}_sum${labelText(m.labelNames, s.labels)} ${num(s.sum ?? 0)}`);
      lines.push(`${m.name}_count${labelText(m.labelNames, s.labels)} ${s.value}`);
    }
  }
  return lines.join('\n') + '\n';
}
