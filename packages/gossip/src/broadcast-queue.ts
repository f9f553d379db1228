// memberlist's TransmitLimitedQueue: fewest transmissions first, newest first among equals; each
// message goes out at most RetransmitMult × ceil(log10(N+1)) times; a broadcast about node X
// replaces a queued one about X (memberlist's own messages only — serf's never invalidate).

export interface Broadcast {
  msg: Buffer;
  /** Node this message is about; a newer broadcast about the same node invalidates it. */
  node?: string | undefined;
  /** Called once the message has been sent its last time or was invalidated. */
  done?: (() => void) | undefined;
}

interface Item extends Broadcast {
  transmits: number;
  id: number;
}

export class BroadcastQueue {
  private items: Item[] = [];
  private seq = 0;

  constructor(
    private readonly retransmitMult: number,
    private readonly numNodes: () => number,
  ) {}

  get length(): number {
    return this.items.length;
  }

  queue(b: Broadcast): void {
    if (b.node !== undefined) {
      const keep: Item[] = [];
      for (const it of this.items) {
        if (it.node === b.node) it.done?.();
        else keep.push(it);
      }
      this.items = keep;
    }
    this.items.push({ ...b, transmits: 0, id: ++this.seq });
  }

  retransmitLimit(): number {
    return this.retransmitMult * Math.ceil(Math.log10(this.numNodes() + 1));
  }

  /** Messages fitting in `limit` bytes, each costing `overhead` extra bytes. */
  get(overhead: number, limit: number): Buffer[] {
    if (this.items.length === 0) return [];
    const max = Math.max(1, this.retransmitLimit());
    this.items.sort((a, b) => a.transmits - b.transmits || b.id - a.id);
    const out: Buffer[] = [];
    let used = 0;
    const keep: Item[] = [];
    for (const it of this.items) {
      const cost = it.msg.length + overhead;
      if (used + cost > limit) {
        keep.push(it);
        continue;
      }
      used += cost;
      out.push(it.msg);
      it.transmits++;
      if (it.transmits >= max) it.done?.();
      else keep.push(it);
    }
    this.items = keep;
    return out;
  }

  clear(): void {
    for (const it of this.items) it.done?.();
    this.items = [];
  }
}
