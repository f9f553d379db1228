// A keyed cache of watched values. The first get() of a key starts its watch and waits for the
// first answer; later gets are synchronous reads of the latest value. Watches stop with the signal.

export class LiveCache<T> {
  private readonly entries = new Map<string, { value: T | undefined; ready: Promise<void>; seen: boolean }>();
  private readonly listeners = new Set<(key: string) => void>();

  constructor(
    private readonly signal: AbortSignal,
    private readonly start: (key: string, on: (v: T | undefined) => void, signal: AbortSignal) => void,
  ) {}

  get(key: string): Promise<T | undefined> | T | undefined {
    const e = this.entries.get(key);
    if (e?.seen) return e.value;
    if (e) return e.ready.then(() => e.value);
    let resolve!: () => void;
    const entry = {
      value: undefined as T | undefined,
      ready: new Promise<void>((r) => (resolve = r)),
      seen: false,
    };
    this.entries.set(key, entry);
    this.signal.addEventListener('abort', () => resolve(), { once: true });
    this.start(
      key,
      (v) => {
        entry.value = v;
        entry.seen = true;
        resolve();
        for (const l of this.listeners) l(key);
      },
      this.signal,
    );
    return entry.ready.then(() => entry.value);
  }

  peek(key: string): T | undefined {
    return this.entries.get(key)?.value;
  }

  onChange(fn: (key: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
