// The global memory budget: the sum of all sandboxes' memory limits may not
// pass it. When a boot would, idle sandboxes of other functions are evicted,
// least recently used first, but never below a function's minWarm: those are
// reserved, and another function's burst cannot take them.

export interface Evictable {
  /** The least recently used idle sandbox this pool can give up, if any. */
  evictionCandidate(): { lastUsedAt: number; evict: () => void } | undefined;
}

export class Capacity {
  private used = 0;
  private readonly members = new Set<Evictable>();

  constructor(readonly limitBytes: number, private readonly onChange: (usedBytes: number) => void = () => {}) {}

  get usedBytes(): number {
    return this.used;
  }

  join(member: Evictable): void {
    this.members.add(member);
  }

  leave(member: Evictable): void {
    this.members.delete(member);
  }

  /**
   * Reserves `bytes` for `requester`, evicting others' idle sandboxes if
   * needed (unless `evict` is false: spares take only free room).
   */
  reserve(bytes: number, requester: Evictable, evict = true): boolean {
    while (this.used + bytes > this.limitBytes) {
      if (!evict) return false;
      let oldest: { lastUsedAt: number; evict: () => void } | undefined;
      for (const member of this.members) {
        if (member === requester) continue;
        const candidate = member.evictionCandidate();
        if (candidate && (!oldest || candidate.lastUsedAt < oldest.lastUsedAt)) oldest = candidate;
      }
      if (!oldest) return false;
      oldest.evict(); // releases its reservation synchronously
    }
    this.used += bytes;
    this.onChange(this.used);
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    this.onChange(this.used);
  }
}
