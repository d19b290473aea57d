// The node runtime, for real: Workers and Lambda handlers in warm sandboxes.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxHost } from '../../src/sandbox/index.js';
import type { Worker } from '../../src/runtime/worker.js';
import { openTestHost } from '../support/env.js';
import { json, request, startWorker } from './helpers.js';

let host: SandboxHost;
let cleanup: () => Promise<void>;
let workers: Worker;

beforeAll(async () => {
  ({ host, cleanup } = await openTestHost('node-runtime'));
  workers = await startWorker(host, 'node-workers', 'node', 'index', { env: { GREETING: 'hello' } });
});
afterAll(() => cleanup());

describe('node, Workers module syntax', () => {
  it('round-trips text, JSON, binary, multi-MiB and empty bodies with method, status and headers', async () => {
    const cases: Array<[Buffer, string]> = [
      [Buffer.from('plain text ✓'), 'text/plain; charset=utf-8'],
      [Buffer.from(JSON.stringify({ a: [1, 2, { b: null }] })), 'application/json'],
      [randomBytes(4096), 'application/octet-stream'],
      [randomBytes(5 * 1024 * 1024), 'application/octet-stream'],
      [Buffer.alloc(0), 'application/octet-stream'],
    ];
    for (const [body, type] of cases) {
      const result = await workers.invoke(request('/echo?q=1', body, [['content-type', type], ['x-status', '207']], 'PUT'));
      expect(result.status).toBe(207);
      expect(Buffer.compare(result.body, body)).toBe(0);
      expect(Object.fromEntries(result.headers)).toMatchObject({ 'content-type': type, 'x-method': 'PUT', 'x-query': '?q=1' });
    }
  });

  it('keeps repeated headers such as set-cookie', async () => {
    const result = await workers.invoke(request('/cookies'));
    expect(result.headers.filter(([key]) => key === 'set-cookie').map(([, value]) => value)).toEqual(['a=1', 'b=2']);
  });

  it('passes the configured environment as env, and keeps fnbox internals out of process.env', async () => {
    const result = json((await workers.invoke(request('/env'))).body) as { env: Record<string, string>; processEnvHasInternal: boolean };
    expect(result.env.GREETING).toBe('hello');
    expect(result.processEnvHasInternal).toBe(false);
  });

  it('keeps globals between calls (warm), like Lambda', async () => {
    const first = json((await workers.invoke(request('/calls'))).body) as { calls: number };
    const second = json((await workers.invoke(request('/calls'))).body) as { calls: number };
    expect(second.calls).toBe(first.calls + 1);
  });

  it('captures the call\'s logs and returns a receipt from the cgroup', async () => {
    const result = await workers.invoke(request('/log'));
    expect(result.logs).toBe('line one\nline two\n');
    expect(result.receipt.wallMs).toBeGreaterThan(0);
    expect(result.receipt.cpuMs).toBeGreaterThan(0);
    expect(result.receipt.memoryPeakBytes).toBeGreaterThan(1024 * 1024);
  });

  it('measures the memory peak per call, not since boot', async () => {
    const big = await workers.invoke(request('/fill-tmp?mb=40'));
    await workers.whenIdle();
    const small = await workers.invoke(request('/log'));
    expect(big.receipt.memoryPeakBytes).toBeGreaterThan(40 * 1024 * 1024);
    expect(small.receipt.memoryPeakBytes).toBeLessThan(big.receipt.memoryPeakBytes - 32 * 1024 * 1024);
  });

  it('caps logs with a visible truncation marker', async () => {
    const result = await workers.invoke(request('/log-flood'));
    expect(result.logs.length).toBeLessThan(70 * 1024);
    expect(result.logs).toMatch(/\[fnbox: log truncated, \d+ bytes dropped\]/);
  });

  it('a function that logs in many tiny writes stays within what the host allows a call to send', async () => {
    // One frame per write: 65,536 of them until the cap, each well-formed.
    const result = await workers.invoke(request('/log-lines'));
    expect(result.body.toString()).toBe('logged');
    expect(result.logs).toMatch(/^\n{65536}\n\[fnbox: log truncated, 34464 bytes dropped\]\n$/);
    expect((await workers.invoke(request('/log'))).logs).toBe('line one\nline two\n');
  });

  it('gives each call a fresh filesystem in the same process, also back to back (the next call waits at its gate for the reset)', async () => {
    const pid = workers.sandbox.pid;
    const swaps = workers.sandbox.swaps;
    const seen: unknown[] = [];
    // Each call is sent as soon as the previous one answered, while its root is being swapped.
    for (let i = 0; i < 200; i++) seen.push(json((await workers.invoke(request('/write'))).body));
    expect(seen.filter((body) => JSON.stringify(body) !== '{"existed":false}')).toEqual([]);
    expect(workers.sandbox.swaps - swaps).toBeGreaterThanOrEqual(199);
    expect(workers.sandbox.pid).toBe(pid);
  });

  it('kills a child process that outlives its call', async () => {
    const { pid } = json((await workers.invoke(request('/spawn'))).body) as { pid: number };
    const { states } = json((await workers.invoke(request('/processes'))).body) as { states: Record<string, string> };
    // Gone, or at most a zombie its parent has not reaped yet: never running.
    expect(states[String(pid)] ?? 'gone').toMatch(/^(gone|Z)$/);
    expect(Object.values(states).filter((state) => state !== 'Z')).toHaveLength(2); // the init and the runtime
  });

  it('refuses a payload over the limit before it reaches the sandbox', async () => {
    const small = await startWorker(host, 'node-workers', 'node', 'index', { maxPayloadBytes: 1024 });
    try {
      await expect(small.invoke(request('/echo', Buffer.alloc(1025)))).rejects.toMatchObject({ code: 'PayloadTooLarge', status: 413 });
      expect(small.calls).toBe(0);
      expect((await small.invoke(request('/echo', Buffer.alloc(1024)))).body.length).toBe(1024);
    } finally {
      await small.destroy();
    }
  });

  it('a response over the limit is an error, not a crash of the gateway', async () => {
    await expect(workers.invoke(request('/big-response?bytes=7000000'))).rejects.toMatchObject({ code: 'Unhandled', details: { name: 'ResponseTooLarge' } });
  });
});

describe('node, failures are typed', () => {
  it('a handler that throws is Unhandled, with message and stack; the worker stays warm', async () => {
    const error = await workers.invoke(request('/throw')).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'Unhandled', status: 502, message: 'boom from the function', details: { name: 'TypeError' } });
    expect((error as { details: { stack: string } }).details.stack).toContain('index.mjs');
    expect(workers.state).toBe('idle');
  });

  it('process.exit(3) is Crashed with the exit code', async () => {
    const worker = await startWorker(host, 'node-workers', 'node', 'index');
    await expect(worker.invoke(request('/exit'))).rejects.toMatchObject({ code: 'Crashed', details: { exitCode: 3 } });
    expect(worker.state).toBe('dead');
  });

  it('allocating past the memory limit is OutOfMemory, from the cgroup counter', async () => {
    const worker = await startWorker(host, 'node-workers', 'node', 'index', { memoryMb: 96 });
    await expect(worker.invoke(request('/oom'))).rejects.toMatchObject({ code: 'OutOfMemory', status: 502 });
  });

  it('a call that loops forever is Timeout, answered within 50 ms of its deadline, and the sandbox is replaced', async () => {
    const worker = await startWorker(host, 'node-workers', 'node', 'index');
    const started = performance.now();
    await expect(worker.invoke(request('/loop'), { timeoutMs: 300 })).rejects.toMatchObject({ code: 'Timeout', status: 504 });
    expect(performance.now() - started).toBeLessThan(350);
    expect(worker.state).toBe('dead');
    for (let i = 0; i < 100 && worker.sandbox.alive; i++) await sleep(10);
    expect(worker.sandbox.alive).toBe(false);
  });

  it('a module that fails to import is InitError at start, not a hang', async () => {
    await expect(startWorker(host, 'node-bad', 'node', 'index')).rejects.toMatchObject({ code: 'InitError', message: expect.stringContaining('missing.mjs') });
  });

  it('a runtime that never reports ready is killed at its init timeout', async () => {
    const before = host.live().length;
    await expect(startWorker(host, 'node-hang', 'node', 'index', { initTimeoutMs: 1500 })).rejects.toMatchObject({ code: 'InitError', message: expect.stringContaining('did not report ready') });
    expect(host.live().length).toBe(before);
  });
});

describe('node, Lambda style', () => {
  it('takes JSON in and gives JSON out, with context', async () => {
    const worker = await startWorker(host, 'node-lambda', 'node', 'handler.handler');
    try {
      const echo = await worker.invoke(request('/', JSON.stringify({ a: 1 }), [['content-type', 'application/json']]));
      expect(echo.headers).toContainEqual(['content-type', 'application/json']);
      expect(json(echo.body)).toEqual({ echo: { a: 1 } });
      const text = await worker.invoke(request('/', 'just text'));
      expect(json(text.body)).toEqual({ echo: 'just text' });
      const empty = await worker.invoke(request('/', ''));
      expect(json(empty.body)).toEqual({ echo: null });
      const context = json((await worker.invoke(request('/', '{"action":"context"}'))).body) as { id: string; remaining: number; fn: string };
      expect(context.remaining).toBeGreaterThan(0);
      expect(context.fn).toBe('node-lambda');
    } finally {
      await worker.destroy();
    }
  });

  it('maps {statusCode, headers, body} to HTTP, and returns bytes as bytes', async () => {
    const worker = await startWorker(host, 'node-lambda', 'node', 'handler.handler');
    try {
      const proxy = await worker.invoke(request('/', '{"action":"proxy"}'));
      expect(proxy.status).toBe(202);
      expect(proxy.headers).toContainEqual(['x-custom', 'yes']);
      expect(proxy.body.toString()).toBe('accepted');
      const binary = await worker.invoke(request('/', '{"action":"binary"}'));
      expect([...binary.body]).toEqual([0, 1, 2, 255]);
      await expect(worker.invoke(request('/', '{"action":"throw"}'))).rejects.toMatchObject({ code: 'Unhandled', message: 'lambda boom' });
    } finally {
      await worker.destroy();
    }
  });

  it('loads a CommonJS entry file', async () => {
    const worker = await startWorker(host, 'node-cjs', 'node', 'index.handler');
    try {
      expect(json((await worker.invoke(request('/', '[1,2]'))).body)).toEqual({ cjs: true, event: [1, 2] });
    } finally {
      await worker.destroy();
    }
  });
});
