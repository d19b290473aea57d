// The request bodies the gateway holds at once. An invocation's payload is
// read whole into memory and stays there while the call waits its turn, so
// many large payloads at once (to a slow function, or to many) would grow
// the gateway without bound and take every function down with it. Each
// call reserves its body's size before reading it (the payload limit when
// no Content-Length says less) and gives it back when the call ends.
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
      throw new FnboxError('Throttled', `the gateway holds ${(this.used / MIB).toFixed(1)} MiB of request bodies and a body of up to ${(bytes / MIB).toFixed(1)} MiB would pass its limit of ${this.limitBytes / MIB} MiB (--max-buffered-mb); retry`, {
        details: { retryAfterSec: 1, bufferedBytes: this.used, limitBytes: this.limitBytes },
      });
    }
    this.used += bytes;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}
