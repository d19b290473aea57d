// A burst against one function: every call is answered, correctly, none
// lost; over the queue limit the answer is 429, not a timeout or a crash;
// and another function's latency barely notices.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFiles, startTestGateway, type TestGateway } from '../support/gateway.js';

let gateway: TestGateway;
const BUSY = {
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', maxConcurrency: 4, queueMax: 300, minWarm: 4 }),
  'index.mjs': `export default { async fetch(request) {
    const body = await request.text();
    await new Promise((r) => setTimeout(r, 20));
    return new Response('echo:' + body);
  } };`,
};
const QUIET = {
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index.handler', minWarm: 1 }),
  'index.mjs': 'export const handler = async (event) => ({ quiet: event });',
};

async function latencies(count: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const response = await fetch(`${gateway.url}/invoke/quiet`, { method: 'POST', body: String(i) });
    expect(await response.json()).toEqual({ quiet: i });
    samples.push(performance.now() - started);
  }
  return samples.sort((a, b) => a - b);
}

const median = (sorted: number[]): number => sorted[Math.floor(sorted.length / 2)]!;

beforeAll(async () => {
  gateway = await startTestGateway('load', { queueWaitMs: '30000' });
  expect((await deployFiles(gateway, 'busy', BUSY)).status).toBe(201);
  expect((await deployFiles(gateway, 'quiet', QUIET)).status).toBe(201);
});
afterAll(() => gateway.stop());

describe('a burst of 500 concurrent calls, maxConcurrency 4', () => {
  it('answers all of them correctly; the queue limit gives 429s; the other function stays fast', async () => {
    await latencies(20); // warm-up
    const idle = median(await latencies(40));

    const burst = Array.from({ length: 500 }, (_, i) =>
      fetch(`${gateway.url}/invoke/busy`, { method: 'POST', body: `call-${i}` }).then(async (response) => ({ i, status: response.status, text: await response.text(), retryAfter: response.headers.get('retry-after') })),
    );
    const during = median(await latencies(40));
    const results = await Promise.all(burst);

    const ok = results.filter((r) => r.status === 200);
    const throttled = results.filter((r) => r.status === 429);
    expect(ok.length + throttled.length).toBe(500);
    for (const r of ok) expect(r.text).toBe(`echo:call-${r.i}`);
    for (const r of throttled) {
      expect(JSON.parse(r.text).error.type).toBe('Throttled');
      expect(r.retryAfter).toMatch(/^\d+$/);
    }
    expect(ok.length).toBeGreaterThanOrEqual(300);
    // At most maxConcurrency sandboxes ever served it.
    const described = (await (await fetch(`${gateway.url}/functions/busy`)).json()) as { pool: { workers: number } };
    expect(described.pool.workers).toBeLessThanOrEqual(4);
    // The other function's warm sandbox was not taken, and its latency held (2×, plus 1 ms for timer noise).
    expect(during).toBeLessThanOrEqual(idle * 2 + 1);
    console.log(`quiet function p50: idle ${idle.toFixed(2)} ms, during the burst ${during.toFixed(2)} ms; busy: ${ok.length} ok, ${throttled.length} throttled`);
  });
});
