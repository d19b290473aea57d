// The HTTP API end to end, over loopback, with real sandboxes.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOYS_AT_ONCE } from '../../src/gateway/app.js';
import { deployFiles, errorOf, invoke, NODE_ECHO, startTestGateway, type TestGateway } from '../support/gateway.js';

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway('api');
});
afterAll(() => gateway.stop());

describe('deploy, invoke, update, delete', () => {
  it('node (Workers): deploy → 201 with the version; invoke → the function\'s own status, headers and body plus the receipt', async () => {
    const deployed = await deployFiles(gateway, 'echo', NODE_ECHO);
    expect(deployed.status).toBe(201);
    const info = (await deployed.json()) as { version: string; created: boolean; runtime: string };
    expect(info).toMatchObject({ created: true, runtime: 'node' });
    expect(info.version).toMatch(/^[0-9a-f]{64}$/);

    const response = await invoke(gateway, 'echo', 'payload', { query: 'x=1' });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-fn')).toBe('echo');
    expect(response.headers.get('x-fnbox-invocation-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(Number(response.headers.get('x-fnbox-duration-ms'))).toBeGreaterThan(0);
    expect(response.headers.get('x-fnbox-cold-start')).toMatch(/^(true|false)$/);
    expect(Number(response.headers.get('x-fnbox-cpu-ms'))).toBeGreaterThanOrEqual(0);
    expect(Number(response.headers.get('x-fnbox-memory-peak-bytes'))).toBeGreaterThan(0);
    expect(await response.json()).toMatchObject({ version: 'v1', method: 'POST', path: '/invoke/echo', query: '?x=1', body: 'payload' });
  });

  it('a deploy of identical bytes is a no-op (200, created false)', async () => {
    const again = await deployFiles(gateway, 'echo', NODE_ECHO);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ created: false });
  });

  it('passes the whole request to /fn/:name/* with the function\'s own path', async () => {
    const response = await fetch(`${gateway.url}/fn/echo/api/items?limit=2`, { method: 'PATCH', body: 'p' });
    expect(await response.json()).toMatchObject({ method: 'PATCH', path: '/api/items', query: '?limit=2', body: 'p' });
  });

  it('an update switches new calls to the new version; the old one drains', async () => {
    const slow = fetch(`${gateway.url}/fn/echo/sleep?ms=400`);
    await sleep(100);
    const updated = await deployFiles(gateway, 'echo', NODE_ECHO, 'env.VERSION=v2');
    expect(updated.status).toBe(201);
    expect(await (await invoke(gateway, 'echo')).json()).toMatchObject({ version: 'v2' });
    // The call in flight finished on the old version.
    expect(await (await slow).json()).toMatchObject({ version: 'v1', path: '/sleep' });
    const described = (await (await fetch(`${gateway.url}/functions/echo`)).json()) as { versions: Array<{ active: boolean }>; config: { env: Record<string, string> } };
    expect(described.versions).toHaveLength(2);
    expect(described.versions.filter((v) => v.active)).toHaveLength(1);
    expect(described.config.env).toEqual({ VERSION: 'v2' });
  });

  it('python and exec functions deploy and answer', async () => {
    expect((await deployFiles(gateway, 'py', { 'fnbox.json': '{"runtime":"python"}', 'main.py': 'def handler(event, context):\n    return {"got": event}\n' })).status).toBe(201);
    expect(await (await invoke(gateway, 'py', '{"a":1}')).json()).toEqual({ got: { a: 1 } });
    expect((await deployFiles(gateway, 'sh', { 'run.sh': '#!/bin/sh\ntr a-z A-Z\n' }, 'runtime=exec&handler=run.sh', { executable: ['run.sh'] })).status).toBe(201);
    expect(await (await invoke(gateway, 'sh', 'shout')).text()).toBe('SHOUT');
  });

  it('?logs=1 returns the call\'s log tail, base64, like Lambda\'s LogType=Tail', async () => {
    await deployFiles(gateway, 'logger', { 'fnbox.json': '{"runtime":"node","handler":"index.handler"}', 'index.mjs': 'export const handler = async () => { console.log("line from the function"); return "ok"; };' });
    const response = await invoke(gateway, 'logger', '', { query: 'logs=1' });
    expect(Buffer.from(response.headers.get('x-fnbox-logs')!, 'base64').toString()).toBe('line from the function\n');
    const none = await invoke(gateway, 'logger');
    expect(none.headers.get('x-fnbox-logs')).toBeNull();
    const recent = (await (await fetch(`${gateway.url}/functions/logger/logs`)).json()) as { calls: Array<{ logs: string; outcome: string }> };
    expect(recent.calls.at(-1)).toMatchObject({ outcome: 'ok', logs: 'line from the function\n' });
  });

  it('lists functions, shows sandboxes as the kernel sees them, and serves metrics', async () => {
    const list = (await (await fetch(`${gateway.url}/functions`)).json()) as { functions: Array<{ name: string }> };
    expect(list.functions.map((f) => f.name)).toEqual(expect.arrayContaining(['echo', 'py', 'sh']));
    const { sandboxes } = (await (await fetch(`${gateway.url}/sandboxes`)).json()) as { sandboxes: Array<Record<string, unknown>> };
    const one = sandboxes.find((s) => s.function === 'echo')!;
    expect(one).toMatchObject({ state: expect.stringMatching(/idle|busy/), cgroup: expect.stringContaining('fnbox-'), enter: expect.stringContaining('nsenter --target') });
    expect((one.namespaces as Record<string, string>).net).toMatch(/^net:\[\d+\]$/);
    expect(one.upperDir).toMatch(/^\/proc\/\d+\/fd\/\d+\/upper$/);
    const single = await fetch(`${gateway.url}/sandboxes/${String(one.id)}`);
    expect(((await single.json()) as { pid: number }).pid).toBe(one.pid);
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/fnbox_invocations_total\{function="echo",outcome="ok"\} \d+/);
    expect(metrics).toContain('fnbox_invocation_duration_seconds_bucket');
    expect(metrics).toContain('fnbox_sandbox_boots_total');
    expect(metrics).toMatch(/fnbox_sandboxes\{function="echo",state="(idle|busy)"\} [1-9]/);
    const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as { status: string; cgroups: string; reservedCgroups: string[] };
    expect(health.status).toBe('ok');
    expect(health.cgroups).toMatch(/^cgroup (v2|hybrid|v1)/);
    // Sandboxes booted, then quiet: cgroups made ahead, empty, beside the sandboxes' own.
    expect(health.reservedCgroups.length).toBeGreaterThan(0);
    for (const dir of health.reservedCgroups) expect(readFileSync(join(dir, 'cgroup.procs'), 'utf8')).toBe('');
    expect(health.reservedCgroups.some((dir) => dir.startsWith(`${dirname(String(one.cgroup))}/`))).toBe(true);
  });

  it('delete drains, frees every sandbox, and the function is gone', async () => {
    await invoke(gateway, 'py', '1');
    const before = gateway.deps.host.live().length;
    const deleted = await fetch(`${gateway.url}/functions/py`, { method: 'DELETE' });
    expect(deleted.status).toBe(200);
    expect(gateway.deps.host.live().length).toBeLessThan(before);
    expect(gateway.deps.host.live().some((sb) => sb.spec.hostname === 'py')).toBe(false);
    const after = await invoke(gateway, 'py', '1');
    expect(await errorOf(after)).toMatchObject({ status: 404, type: 'FunctionNotFound' });
    // Its metric series went with it; the others' stay.
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).not.toMatch(/function="py"/);
    expect(metrics).toMatch(/fnbox_invocations_total\{function="echo",outcome="ok"\} [1-9]/);
  });

  it('a delete while calls keep coming: each call is answered or FunctionNotFound, and no sandbox of it is left', async () => {
    expect((await deployFiles(gateway, 'busy-delete', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","minWarm":2,"maxConcurrency":4}' })).status).toBe(201);
    let deletedAt = Infinity;
    const statuses: number[] = [];
    // Callers that keep calling until well after the delete: calls arrive while the pool drains.
    const callers = Array.from({ length: 8 }, async () => {
      while (performance.now() < deletedAt + 300) {
        const response = await fetch(`${gateway.url}/fn/busy-delete/sleep?ms=20`, { method: 'POST', body: 'x' });
        await response.arrayBuffer();
        statuses.push(response.status);
      }
    });
    await sleep(300);
    deletedAt = performance.now();
    expect((await fetch(`${gateway.url}/functions/busy-delete`, { method: 'DELETE' })).status).toBe(200);
    await Promise.all(callers);
    expect(statuses.filter((status) => status !== 200 && status !== 404)).toEqual([]);
    expect(statuses).toContain(404);
    expect(gateway.deps.dispatcher.poolIfAny('busy-delete')).toBeUndefined();
    expect(gateway.deps.host.live().filter((sb) => sb.spec.hostname === 'busy-delete')).toEqual([]);
  });
});

describe('a burst of deploys', () => {
  it('takes turns: of six uploads at once, at most two are unpacked at a time, and all six land', async () => {
    // Each unpacker runs as nobody (uid 65534) while it writes, a child of this process (the gateway
    // runs in it): count them while the uploads go on. Other test files' gateways have their own.
    const unpackers = (): number => readdirSync('/proc').filter((pid) => {
      try {
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        return /^Uid:\s+65534\s/m.test(status) && status.match(/^PPid:\s+(\d+)/m)?.[1] === String(process.pid);
      } catch {
        return false; // not a process, or gone
      }
    }).length;
    const filler = randomBytes(2 * 1024 * 1024).toString('hex');
    let most = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        most = Math.max(most, unpackers());
        await sleep(2);
      }
    })();
    const deploys = await Promise.all(Array.from({ length: 6 }, (_, i) => deployFiles(gateway, `burst-${i}`, { ...NODE_ECHO, 'filler.txt': filler })));
    sampling = false;
    await sampler;
    expect(deploys.map((response) => response.status)).toEqual(Array(6).fill(201));
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(DEPLOYS_AT_ONCE);
    for (let i = 0; i < 6; i++) await fetch(`${gateway.url}/functions/burst-${i}`, { method: 'DELETE' });
  });
});
