// Spare runtimes in the gateway: a cold start adopts a started runtime of
// the function's shape instead of booting one; the spare is refilled; spares
// show up in /healthz, /sandboxes and /metrics, and go with the gateway.
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFiles, invoke, startTestGateway, type TestGateway } from '../support/gateway.js';

let gateway: TestGateway;
const lambda = (greeting: string, manifest: Record<string, unknown> = {}): Record<string, string> => ({
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index.handler', ...manifest }),
  'index.mjs': `export const handler = async () => ({ greeting: ${JSON.stringify(greeting)}, from: process.env.WHO });`,
});

interface SandboxView { id: string; function: string | null; state: string; initPid: number; cgroup: string; adoptedFromSpare: boolean }

const sandboxes = async (): Promise<SandboxView[]> => ((await (await fetch(`${gateway.url}/sandboxes`)).json()) as { sandboxes: SandboxView[] }).sandboxes;
const metrics = async (): Promise<string> => (await fetch(`${gateway.url}/metrics`)).text();

async function readySpares(): Promise<number> {
  const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as { spares: Array<{ ready: number }> };
  return health.spares.reduce((sum, shape) => sum + shape.ready, 0);
}

async function untilSpareReady(): Promise<void> {
  for (let i = 0; i < 200 && (await readySpares()) < 1; i++) await sleep(25);
  expect(await readySpares()).toBe(1);
}

beforeAll(async () => {
  gateway = await startTestGateway('spares');
});
afterAll(() => gateway.stop());

describe('spare runtimes', () => {
  it('a deployed shape gets a spare; the next cold start of that shape adopts it, and it is refilled', async () => {
    expect((await deployFiles(gateway, 'first', lambda('one'))).status).toBe(201);
    await untilSpareReady();
    const spare = (await sandboxes()).find((s) => s.state === 'spare')!;
    expect(spare).toMatchObject({ function: null, adoptedFromSpare: false });

    // Same shape (the default limits): the deploy check adopts the spare.
    expect((await deployFiles(gateway, 'second', lambda('two'), 'env.WHO=manifest&idleTtlSec=1'))).toMatchObject({ status: 201 });
    const adopted = (await sandboxes()).find((s) => s.id === spare.id)!;
    expect(adopted).toMatchObject({ function: 'second', adoptedFromSpare: true });
    const response = await invoke(gateway, 'second');
    expect(await response.json()).toEqual({ greeting: 'two', from: 'manifest' });
    expect(await metrics()).toMatch(/fnbox_spare_adoptions_total\{function="second"\} 1/);
    await untilSpareReady();

    // Scaled down to nothing after idleTtlSec: the next call is a cold start, served by a spare.
    for (let i = 0; i < 60 && (await sandboxes()).some((s) => s.function === 'second'); i++) await sleep(100);
    expect((await sandboxes()).some((s) => s.function === 'second')).toBe(false);
    const cold = await invoke(gateway, 'second');
    expect(cold.status).toBe(200);
    expect(cold.headers.get('x-fnbox-cold-start')).toBe('true');
    expect(await metrics()).toMatch(/fnbox_spare_adoptions_total\{function="second"\} 2/);
    await untilSpareReady();
    expect(await metrics()).toMatch(/fnbox_spare_sandboxes\{shape="node\/128MiB[^"]*",state="ready"\} 1/);
  });

  it('a function whose module cannot load is refused at deploy, spare or not, and the spare it took is gone', async () => {
    await untilSpareReady();
    const spare = (await sandboxes()).find((s) => s.state === 'spare')!;
    const response = await deployFiles(gateway, 'broken', { 'fnbox.json': '{"runtime":"node","handler":"index.handler"}', 'index.mjs': 'throw new Error("cannot load");' });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { type: 'InitError', message: expect.stringContaining('cannot load') } });
    for (let i = 0; i < 100 && existsSync(`/proc/${spare.initPid}`); i++) await sleep(10);
    expect(existsSync(`/proc/${spare.initPid}`)).toBe(false);
    expect(existsSync(spare.cgroup)).toBe(false);
  });

  it('spares go with the gateway, and come back for the stored functions\' shapes at the next start', async () => {
    await untilSpareReady();
    const spare = (await sandboxes()).find((s) => s.state === 'spare')!;
    await gateway.close();
    expect(existsSync(`/proc/${spare.initPid}`)).toBe(false);
    expect(existsSync(spare.cgroup)).toBe(false);

    gateway = await startTestGateway('spares', {}, gateway.stateDir);
    await untilSpareReady(); // no call, no deploy: the stored functions' shape
    expect((await sandboxes()).map((s) => s.state)).toEqual(['spare']);
  });
});
