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

describe('a function that loses its sandbox on every call', () => {
  // A gateway of its own: the capacity above is spoken for by the warm pools' functions.
  let own: TestGateway;
  beforeAll(async () => {
    own = await startTestGateway('crash-loop');
  });
  afterAll(() => own.stop());

  async function lostInARow(name: string): Promise<number> {
    const described = (await (await fetch(`${own.url}/functions/${name}`)).json()) as { pool: { lostInARow: number } };
    return described.pool.lostInARow;
  }

  it('gets its next sandbox ever later (100 ms after 3 losses in a row, doubling), until a call ends well', async () => {
    expect((await deployFiles(own, 'crasher', {
      'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index.handler', maxConcurrency: 1 }),
      'index.mjs': 'export const handler = async (event) => { if (event === "crash") process.exit(3); return "fine"; };',
    })).status).toBe(201);
    const took: number[] = [];
    for (let i = 0; i < 7; i++) {
      const started = performance.now();
      expect(await errorOf(await invoke(own, 'crasher', 'crash'))).toMatchObject({ status: 502, type: 'Crashed' });
      took.push(performance.now() - started);
    }
    console.log(`crash calls took ${took.map((ms) => ms.toFixed(0)).join(', ')} ms`);
    expect(await lostInARow('crasher')).toBe(7);
    // The 7th call waited 800 ms after the 6th loss for its sandbox (less the moment between that
    // loss and the 6th answer): a boot per crash takes a fraction of that.
    expect(took[6]).toBeGreaterThanOrEqual(700);
    // A call that ends well (after its own 1.6 s wait) starts the count afresh.
    expect((await invoke(own, 'crasher', 'fine')).status).toBe(200);
    expect(await lostInARow('crasher')).toBe(0);
  });

  it('boots that fail count too: a module that stopped loading is not booted again for every call', async () => {
    // Loads at deploy, fails to load from 1.5 s on; each call crashes its sandbox, so each needs a boot.
    const brokenFrom = Date.now() + 1500;
    expect((await deployFiles(own, 'rotting', {
      'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index.handler', maxConcurrency: 1, minWarm: 1 }),
      'index.mjs': `if (Date.now() > ${brokenFrom}) throw new Error('cannot load any more');\nexport const handler = async () => process.exit(3);`,
    })).status).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, brokenFrom - Date.now()) + 100));
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) outcomes.push((await errorOf(await invoke(own, 'rotting'))).type);
    // The warm sandbox crashes, then every boot fails: each failure counts.
    expect(outcomes[0]).toBe('Crashed');
    expect(outcomes.slice(1)).toEqual(Array(5).fill('InitError'));
    expect(await lostInARow('rotting')).toBeGreaterThanOrEqual(6);
  });
});
