// Work still under way (boots, mostly) that a close or a drain must wait
// for: what it makes after the close would otherwise outlive it.

export class InFlight {
  private readonly pending = new Set<Promise<void>>();

  /** Returns `work` as is; it is waited for by settled() until it settles. */
  track<T>(work: Promise<T>): Promise<T> {
    const done = work.then(() => undefined, () => undefined);
    this.pending.add(done);
    void done.then(() => this.pending.delete(done));
    return work;
  }

  /** How much is still under way. */
  get count(): number {
    return this.pending.size;
  }

  /** Resolves once everything tracked so far has settled, fulfilled or not. */
  async settled(): Promise<void> {
    await Promise.all(this.pending);
  }
}
