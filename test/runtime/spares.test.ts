// Spare runtimes: a node, python or exec runtime started before any function is known,
// then adopted by one (Worker.startSpare + Worker.adopt, src/pool/spares.ts).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxHost } from '../../src/sandbox/index.js';
import { DEFAULT_WORKER_LIMITS, Worker, type WorkerConfig } from '../../src/runtime/worker.js';
import { imageStore, openTestHost, tempDir } from '../support/env.js';
import { FIXTURES, json, request } from './helpers.js';

let host: SandboxHost;
let cleanup: () => Promise<void>;
let emptyLayer: string;

const configFor = (fixture: string, handler: string, overrides: Partial<WorkerConfig> = {}): WorkerConfig => ({
  ...DEFAULT_WORKER_LIMITS,
  functionName: fixture,
  runtime: 'node',
  handler,
  codeLayer: join(FIXTURES, fixture),
  env: {},
  timeoutMs: 5000,
  ...overrides,
});

const startSpare = (config: WorkerConfig): Promise<Worker> => Worker.startSpare(host, imageStore(), config, emptyLayer);

beforeAll(async () => {
  ({ host, cleanup } = await openTestHost('spares'));
  emptyLayer = tempDir('spare-layer');
  mkdirSync(join(emptyLayer, 'code'));
});
afterAll(async () => {
  await cleanup();
  rmSync(emptyLayer, { recursive: true, force: true });
});

describe('spare runtimes', () => {
  it('a spare adopted by a function serves it: its code, env, hostname and limits; the same process', async () => {
    const config = configFor('node-workers', 'index', { env: { GREETING: 'from the manifest' } });
    const spare = await startSpare(config);
    try {
      expect(spare.state).toBe('spare');
      const pid = spare.sandbox.pid!;
      // Before adoption the runtime runs on the empty layer, with no function env.
      expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain('GREETING');
      await spare.adopt(config);
      expect(spare.state).toBe('idle');
      expect(spare.adopted).toBe(true);
      expect(spare.sandbox.pid).toBe(pid);
      const env = json((await spare.invoke(request('/env'))).body) as { env: Record<string, string>; processEnvHasInternal: boolean };
      expect(env.env.GREETING).toBe('from the manifest');
      expect(env.processEnvHasInternal).toBe(false);
      const echo = await spare.invoke(request('/echo', 'hi', [['content-type', 'text/plain'], ['x-status', '201']]));
      expect([echo.status, echo.body.toString()]).toEqual([201, 'hi']);
      expect(readFileSync(`/proc/${spare.sandbox.initPid}/root/code/index.mjs`, 'utf8')).toContain('fetch(request, env)');
      expect(spare.sandbox.spec.hostname).toBe('node-workers');
      // The cgroup limits it was booted with are the function's.
      expect(Number(readFileSync(join(spare.sandbox.cgroup.primaryDir, host.cgroups.mode === 'v2' ? 'memory.max' : 'memory.limit_in_bytes'), 'utf8'))).toBe(config.memoryMb * 1024 * 1024);
    } finally {
      await spare.destroy();
    }
  });

  it('the hostname inside is the function\'s after adoption', async () => {
    const config = configFor('node-lambda', 'handler.handler');
    const spare = await startSpare(config);
    try {
      expect(execFileSync('nsenter', ['--target', String(spare.sandbox.pid), '--uts', 'cat', '/proc/sys/kernel/hostname'], { encoding: 'utf8' })).toBe('spare\n');
      await spare.adopt(config);
      // The sandbox's UTS namespace, read by a host process that joins only that namespace.
      const hostname = (pid: number): string => execFileSync('nsenter', ['--target', String(pid), '--uts', 'cat', '/proc/sys/kernel/hostname'], { encoding: 'utf8' });
      expect(hostname(spare.sandbox.pid!)).toBe('node-lambda\n');
      expect(hostname(spare.sandbox.initPid)).toBe('node-lambda\n');
    } finally {
      await spare.destroy();
    }
  });

  it('a function whose module fails to load is an InitError on adoption, and the spare is gone', async () => {
    const config = configFor('node-bad', 'index');
    const spare = await startSpare(config);
    const initPid = spare.sandbox.initPid;
    await expect(spare.adopt(config)).rejects.toMatchObject({ code: 'InitError' });
    expect(spare.state).toBe('dead');
    await spare.sandbox.exited;
    for (let i = 0; i < 100 && readFileSyncOrNull(`/proc/${initPid}/stat`); i++) await new Promise((r) => setTimeout(r, 10));
    expect(readFileSyncOrNull(`/proc/${initPid}/stat`)).toBeNull();
  });

  it('python: a spare adopted by a function serves it, with its env and a fresh root per call; a broken module is an InitError', async () => {
    const config = configFor('python', 'main.handler', { runtime: 'python', env: { GREETING: 'from the manifest' } });
    const spare = await startSpare(config);
    try {
      expect(spare.state).toBe('spare');
      const pid = spare.sandbox.pid;
      await spare.adopt(config);
      expect(spare.sandbox.pid).toBe(pid);
      const call = (action: string) => spare.invoke(request('/', JSON.stringify({ action }), [['content-type', 'application/json']]));
      expect(json((await call('env')).body)).toEqual({ greeting: 'from the manifest', internal: false });
      expect(json((await call('write')).body)).toEqual({ existed: false });
      expect(json((await call('write')).body)).toEqual({ existed: false }); // a fresh root per call, as always
      expect((await call('log')).logs).toBe('hello from python\n');
    } finally {
      await spare.destroy();
    }
    const broken = configFor('python-bad', 'main.handler', { runtime: 'python' });
    const badSpare = await startSpare(broken);
    await expect(badSpare.adopt(broken)).rejects.toMatchObject({ code: 'InitError' });
    expect(badSpare.state).toBe('dead');
  });

  it('exec: a spare adopted by a function runs its executable per call, with its env; a missing executable is an InitError', async () => {
    const config = configFor('exec', 'run.sh', { runtime: 'exec', env: { GREETING: 'hi' } });
    const spare = await startSpare(config);
    try {
      await spare.adopt(config);
      const env = await spare.invoke(request('/p?env', ''));
      expect(env.body.toString()).toMatch(/^method=POST path=\/p id=\S+ greeting=hi\n$/);
      const echo = await spare.invoke(request('/', 'echo me'));
      expect([echo.body.toString(), echo.logs]).toEqual(['echo me', 'log line\n']);
    } finally {
      await spare.destroy();
    }
    const missing = configFor('exec', 'nope.sh', { runtime: 'exec' });
    const badSpare = await startSpare(missing);
    await expect(badSpare.adopt(missing)).rejects.toMatchObject({ code: 'InitError', message: expect.stringContaining('nope.sh not found') });
  });

  it('a function that exits while it loads is an InitError at once, not a timeout', async () => {
    const layer = tempDir('exits-on-load');
    mkdirSync(join(layer, 'code'));
    writeFileSync(join(layer, 'code', 'index.mjs'), 'process.exit(7);\n');
    try {
      const config = { ...configFor('node-lambda', 'index.handler', { initTimeoutMs: 5000 }), codeLayer: layer };
      const spare = await startSpare(config);
      const started = performance.now();
      await expect(spare.adopt(config)).rejects.toMatchObject({ code: 'InitError', message: expect.stringContaining('exited during start-up (code 7)') });
      expect(performance.now() - started).toBeLessThan(4000);
    } finally {
      rmSync(layer, { recursive: true, force: true });
    }
  });

  it('refuses a function of another shape, and a second adoption', async () => {
    const config = configFor('node-lambda', 'handler.handler');
    const spare = await startSpare(config);
    try {
      await expect(spare.adopt({ ...config, memoryMb: 256 })).rejects.toMatchObject({ code: 'SandboxError', message: expect.stringContaining('shape') });
      expect(spare.state).toBe('spare');
      await spare.adopt(config);
      await expect(spare.adopt(configFor('node-workers', 'index'))).rejects.toMatchObject({ code: 'SandboxError', message: expect.stringContaining('only a spare') });
      expect((await spare.invoke(request('/', '{"name":"x"}', [['content-type', 'application/json']]))).status).toBe(200);
    } finally {
      await spare.destroy();
    }
  });
});

function readFileSyncOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
