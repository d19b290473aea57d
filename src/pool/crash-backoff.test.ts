import { describe, expect, it } from 'vitest';
import { CrashBackoff } from './crash-backoff.js';

describe('CrashBackoff', () => {
  it('lets two losses in a row boot at once, then waits 100 ms doubling per loss up to 10 s, counted from the last loss', () => {
    let now = 1_000_000;
    const backoff = new CrashBackoff(() => now);
    backoff.lost();
    backoff.lost();
    expect(backoff.delayMs()).toBe(0);
    const delays = [];
    for (let i = 0; i < 10; i++) {
      backoff.lost();
      delays.push(backoff.delayMs());
    }
    expect(delays).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    now += 4000;
    expect(backoff.delayMs()).toBe(6000);
    now += 6000;
    expect(backoff.delayMs()).toBe(0);
    expect(backoff.consecutiveLosses).toBe(12);
  });

  it('a call that ends well starts the count afresh', () => {
    const backoff = new CrashBackoff(() => 0);
    for (let i = 0; i < 5; i++) backoff.lost();
    expect(backoff.delayMs()).toBeGreaterThan(0);
    backoff.succeeded();
    expect(backoff.consecutiveLosses).toBe(0);
    backoff.lost();
    expect(backoff.delayMs()).toBe(0);
  });
});
