// The bodies the gateway holds in memory at once. An invocation's payload
// is read whole and stays while the call waits its turn; its response stays
// until the client has taken all of it. Many large ones at once (to a slow
// function, or to a client that does not read) would grow the gateway
// without bound and take every function down with it. Each call reserves
// its payload's size before reading it (the payload limit when no
// Content-Length says less), refused once the budget is spent; a response
// is counted until it is sent or its client gone, and while responses fill
// the budget, new calls are refused.
import { FnboxError } from '../errors.js';

const MIB = 1024 * 1024;

export class BodyBudget {
  private used = 0;

  constructor(readonly limitBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  /** Room for a body of up to `bytes`, or Throttled (429) when the gateway holds too much already. */
  reserve(bytes: number): void {
    if (this.used + bytes > this.limitBytes) {
      throw new FnboxError('Throttled', `the gateway holds ${(this.used / MIB).toFixed(1)} MiB of payloads and responses, and a payload of up to ${(bytes / MIB).toFixed(1)} MiB would pass its limit of ${this.limitBytes / MIB} MiB (--max-buffered-mb); retry`, {
        details: { retryAfterSec: 1, bufferedBytes: this.used, limitBytes: this.limitBytes },
      });
    }
    this.used += bytes;
  }

  /**
   * Room for a payload before a byte of it is read: what its Content-Length
   * says, the payload limit without one. Returns the bytes held; none for
   * a body over the limit, which the read refuses anyway.
   */
  reservePayload(contentLength: string | undefined, limitBytes: number): number {
    const declared = Number(contentLength ?? NaN);
    if (declared > limitBytes) return 0;
    const bytes = declared >= 0 ? declared : limitBytes;
    this.reserve(bytes);
    return bytes;
  }

  /** Counts a body that is already here (a response): never refused, it only refuses the calls after it. */
  hold(bytes: number): void {
    this.used += bytes;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}
