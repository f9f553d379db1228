// StaticMembership: a Membership from a fixed list the caller edits (configured servers, tests,
// and the CLI's one-shot commands). The gossip WAN pool is the real implementation.

import type { Membership, MemberStatus, WanMember } from './interfaces.js';

export class StaticMembership implements Membership {
  private list: WanMember[] = [];
  private readonly listeners = new Set<() => void>();

  constructor(members: WanMember[] = []) {
    this.list = members.map((m) => ({ ...m }));
  }

  members(): WanMember[] {
    return this.list.map((m) => ({ ...m }));
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  upsert(member: WanMember): void {
    this.list = this.list.filter((m) => !(m.name === member.name && m.dc === member.dc));
    this.list.push({ ...member });
    this.emit();
  }

  setStatus(dc: string, status: MemberStatus): void {
    for (const m of this.list) if (m.dc === dc) m.status = status;
    this.emit();
  }

  private emit(): void {
    for (const l of [...this.listeners]) l();
  }
}
