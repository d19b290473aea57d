// A function that loses its sandbox on every call (it crashes, runs out of
// memory, times out, breaks the channel), or whose sandboxes no longer
// start, would have the host boot a new one for every call, and a boot costs the machine several times what a call
// does, most of it outside the function's own cgroup. After a few such
// calls in a row the next boot waits, longer each time, as Kubernetes'
// CrashLoopBackOff does; a call that ends well starts the count afresh.

/** Losses in a row that still get their new sandbox at once. */
export const LOSSES_BEFORE_BACKOFF = 3;
const FIRST_DELAY_MS = 100;
const MAX_DELAY_MS = 10_000;

export class CrashBackoff {
  private losses = 0;
  private lastLossAt = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** A call ended with its sandbox gone because of what the function did, or a boot failed. */
  lost(): void {
    this.losses++;
    this.lastLossAt = this.now();
  }

  /** A call ended well. */
  succeeded(): void {
    this.losses = 0;
  }

  get consecutiveLosses(): number {
    return this.losses;
  }

  /** How long the next boot waits from now: 100 ms after the third loss in a row, doubling per loss, at most 10 s. */
  delayMs(): number {
    if (this.losses < LOSSES_BEFORE_BACKOFF) return 0;
    const delay = Math.min(FIRST_DELAY_MS * 2 ** (this.losses - LOSSES_BEFORE_BACKOFF), MAX_DELAY_MS);
    return Math.max(0, this.lastLossAt + delay - this.now());
  }
}
