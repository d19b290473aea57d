// Warm pools: scale-down after idleTtlSec, the global memory capacity with
// least-recently-used eviction, and minWarm sandboxes that another
// function's burst cannot take.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFiles, errorOf, invoke, startTestGateway, type TestGateway } from '../support/gateway.js';

let gateway: TestGateway;
const fn = (manifest: Record<string, unknown>): Record<string, string> => ({
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index.handler', memoryMb: 128, ...manifest }),
  'index.mjs': 'export const handler = async () => "ok";',
});

async function workers(name: string): Promise<number> {
  const described = (await (await fetch(`${gateway.url}/functions/${name}`)).json()) as { pool: { workers: number } };
  return described.pool.workers;
}

beforeAll(async () => {
  // Room for three 128 MiB sandboxes in all.
  gateway = await startTestGateway('pools', { capacityMb: '384', queueWaitMs: '2000' });
});
afterAll(() => gateway.stop());

describe('warm pools', () => {
  it('an idle sandbox above minWarm goes after idleTtlSec', async () => {
    expect((await deployFiles(gateway, 'short-lived', fn({ idleTtlSec: 1 }))).status).toBe(201);
    expect((await invoke(gateway, 'short-lived')).status).toBe(200);
    expect(await workers('short-lived')).toBe(1);
    for (let i = 0; i < 50 && (await workers('short-lived')) > 0; i++) await sleep(100);
    expect(await workers('short-lived')).toBe(0);
  });

  it('capacity: a new sandbox evicts the least recently used idle one of another function, never a minWarm one', async () => {
    expect((await deployFiles(gateway, 'reserved', fn({ minWarm: 1 }))).status).toBe(201);
    expect((await deployFiles(gateway, 'old', fn({}))).status).toBe(201);
    expect((await deployFiles(gateway, 'older', fn({}))).status).toBe(201);
    // reserved (minWarm) + old + older fill the 384 MiB; older was used first.
    await invoke(gateway, 'older');
    await invoke(gateway, 'old');
    expect([await workers('reserved'), await workers('old'), await workers('older')]).toEqual([1, 1, 1]);
    const metricsBefore = await (await fetch(`${gateway.url}/metrics`)).text();

    expect((await deployFiles(gateway, 'newcomer', fn({}))).status).toBe(201);
    expect((await invoke(gateway, 'newcomer')).status).toBe(200);
    expect(await workers('newcomer')).toBe(1);
    expect(await workers('older')).toBe(0); // least recently used: evicted
    expect(await workers('old')).toBe(1);
    expect(await workers('reserved')).toBe(1); // reserved: never evicted
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/fnbox_evictions_total\{function="older"\} 1/);
    expect(metricsBefore).not.toMatch(/fnbox_evictions_total\{function="older"\}/);
  });

  it('when nothing can be evicted, a call is Throttled (429), not queued forever', async () => {
    // 'reserved' (128 MiB, minWarm) + 'hog' (256 MiB, minWarm) fill the 384 MiB: nothing left to evict.
    expect((await deployFiles(gateway, 'hog', fn({ minWarm: 1, memoryMb: 256 }))).status).toBe(201);
    expect(await workers('hog')).toBe(1);
    expect((await deployFiles(gateway, 'squeezed', fn({}))).status).toBe(201);
    expect(await errorOf(await invoke(gateway, 'squeezed'))).toMatchObject({ status: 429, type: 'Throttled', message: expect.stringContaining('global capacity') });
    expect(await workers('reserved')).toBe(1);
    expect(await workers('hog')).toBe(1);
  });
});
