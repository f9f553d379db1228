// CommitTimes: the primary's record of when each replicated index was seen committed, so a batch
// can carry the commit time of its oldest change and the secondary can report true lag (including
// time spent queued behind a slow link), not just the time on the wire. Bounded memory.

export class CommitTimes {
  private indexes: number[] = [];
  private times: number[] = [];
  /** Indexes at or below this were committed before we watched (or were forgotten): unknown. */
  private floor = Number.MAX_SAFE_INTEGER;

  constructor(private readonly capacity = 10_000) {}

  /** Start recording: every index after `index` will be covered. */
  startAt(index: number): void {
    this.floor = index;
  }

  record(index: number, at: number): void {
    const last = this.indexes[this.indexes.length - 1];
    if (last !== undefined && index <= last) return;
    this.indexes.push(index);
    this.times.push(at);
    if (this.indexes.length > this.capacity) {
      const drop = this.indexes.length - Math.floor(this.capacity / 2);
      this.floor = this.indexes[drop - 1]!;
      this.indexes = this.indexes.slice(drop);
      this.times = this.times.slice(drop);
    }
  }

  /** When `index` was first seen committed (the first record at or after it); undefined if unknown. */
  timeOf(index: number): number | undefined {
    if (index <= this.floor) return undefined;
    let lo = 0;
    let hi = this.indexes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.indexes[mid]! < index) lo = mid + 1;
      else hi = mid;
    }
    return this.times[lo];
  }
}
