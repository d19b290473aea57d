import { describe, expect, it } from 'vitest';
import { InFlight } from './in-flight.js';

describe('InFlight', () => {
  it('settled() waits for every tracked promise, a rejected one too, and track() hands back the same promise', async () => {
    const inFlight = new InFlight();
    const order: string[] = [];
    let fail!: (error: Error) => void;
    const failing = inFlight.track(new Promise<void>((_, reject) => (fail = reject)));
    const slow = inFlight.track(new Promise<string>((resolve) => setTimeout(() => { order.push('slow'); resolve('value'); }, 20)));
    const waited = inFlight.settled().then(() => order.push('settled'));
    setTimeout(() => { order.push('failing'); fail(new Error('boot failed')); }, 5);
    await expect(failing).rejects.toThrow('boot failed');
    expect(await slow).toBe('value');
    await waited;
    expect(order).toEqual(['failing', 'slow', 'settled']);
  });
});
