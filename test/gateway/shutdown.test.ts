// SIGTERM: stop accepting, finish the calls in flight, destroy every
// sandbox, leave nothing behind.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { TEST_IMAGE_DIR, tempDir } from '../support/env.js';
import { deployFiles, NODE_ECHO, startTestGateway } from '../support/gateway.js';
import { fnboxCgroupDirs, hostMounts } from '../support/host-state.js';

/** 'gone', or the Name/State/Uid lines of whatever holds the pid now. */
function processState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').filter((l) => /^(Name|State|Uid|PPid):/.test(l)).join(' ');
  } catch {
    return 'gone';
  }
}

describe('graceful shutdown', () => {
  it('SIGTERM with calls in flight: they finish, then every sandbox and cgroup is gone', async () => {
    const stateDir = tempDir('sigterm');
    const port = 30000 + (process.pid % 10000);
    const mountsBefore = hostMounts();
    const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js'), 'serve', '--port', String(port), '--state-dir', stateDir, '--images-dir', TEST_IMAGE_DIR, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const base = `http://127.0.0.1:${port}`;
    try {
      for (let i = 0; i < 300; i++) {
        if (await fetch(`${base}/healthz`).then((r) => r.ok, () => false)) break;
        await sleep(50);
      }
      expect((await deployFiles({ url: base } as never, 'echo', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","maxConcurrency":3,"minWarm":3}' })).status).toBe(201);
      const { sandboxes: before } = (await (await fetch(`${base}/sandboxes`)).json()) as { sandboxes: Array<{ pid: number; initPid: number; monitorPid: number; cgroupDirs: string[] }> };
      const inFlight = Array.from({ length: 3 }, (_, i) => fetch(`${base}/fn/echo/sleep?ms=800`, { method: 'POST', body: `call-${i}` }));
      await sleep(300);
      const { sandboxes } = (await (await fetch(`${base}/sandboxes`)).json()) as { sandboxes: Array<{ pid: number; initPid: number; monitorPid: number; cgroupDirs: string[] }> };
      expect(sandboxes.length).toBeGreaterThanOrEqual(before.length);
      child.kill('SIGTERM');
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

      const answers = await Promise.all(inFlight.map(async (p) => {
        const response = await p;
        return { status: response.status, body: (await response.json()) as { body: string } };
      }));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
      expect(answers.map((a) => a.body.body).sort()).toEqual(['call-0', 'call-1', 'call-2']);
      expect(await exited).toBe(0);

      for (const sb of sandboxes) {
        for (const pid of [sb.pid, sb.initPid, sb.monitorPid]) expect(processState(pid), `pid ${pid}`).toBe('gone');
        for (const dir of sb.cgroupDirs) expect(existsSync(dir), dir).toBe(false);
      }
      expect(fnboxCgroupDirs().filter((dir) => sandboxes.some((sb) => dir.startsWith(join(sb.cgroupDirs[0]!, '..'))))).toEqual([]);
      expect(hostMounts()).toEqual(mountsBefore);
      expect(await fetch(`${base}/healthz`).then(() => 'answered', () => 'refused')).toBe('refused');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('calls whose clients hung up hold neither a sandbox nor the shutdown', async () => {
    const gateway = await startTestGateway('hangup', { shutdownGraceMs: '30000' });
    let closed = false;
    try {
      expect((await deployFiles(gateway, 'echo', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","maxConcurrency":2,"minWarm":2,"queueMax":100}' })).status).toBe(201);
      // Two calls run (stopped once the 1 s hang-up grace is over, their sandboxes retired), six wait behind them.
      const callers = Array.from({ length: 8 }, () => new AbortController());
      const calls = callers.map((caller, i) => fetch(`${gateway.url}/fn/echo/sleep?ms=3000`, { method: 'POST', body: `call-${i}`, signal: caller.signal }).catch((error: Error) => error.name));
      await sleep(300);
      for (const caller of callers) caller.abort();
      expect(await Promise.all(calls)).toEqual(Array(8).fill('AbortError'));
      const started = Date.now();
      await gateway.close();
      closed = true;
      // Nothing is left to finish: the 30 s grace period is not waited out.
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      if (!closed) await gateway.close();
      rmSync(gateway.stateDir, { recursive: true, force: true });
    }
  });

  it('a call that arrives on a kept-alive connection during the shutdown is refused (503), and boots nothing', async () => {
    const gateway = await startTestGateway('keepalive');
    let closed = false;
    try {
      expect((await deployFiles(gateway, 'echo', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","minWarm":1}' })).status).toBe(201);
      const socket = connect(gateway.port, '127.0.0.1');
      // Closed before the second request was read, the connection may end in a reset: a close all the same.
      socket.on('error', () => {});
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
      const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      const send = (path: string): boolean => socket.write(`POST ${path} HTTP/1.1\r\nHost: fnbox\r\nContent-Length: 1\r\n\r\nx`);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      send('/fn/echo/sleep?ms=600');
      await sleep(200);
      const closing = gateway.close();
      for (let i = 0; i < 200 && !received.includes('"body":"x"'); i++) await sleep(10);
      expect(received).toMatch(/^HTTP\/1\.1 200/);
      // The same connection, after the answer: the pools are draining or gone.
      received = '';
      send('/fn/echo');
      await Promise.race([ended, sleep(3000)]);
      await closing;
      closed = true;
      // Refused and the connection closed after it, or closed before it was read: never served by a new pool.
      if (received) expect(received).toMatch(/^HTTP\/1\.1 503[\s\S]*[Cc]onnection: close[\s\S]*"type":"Unavailable"[\s\S]*shutting down/);
      expect(socket.readyState).toBe('closed');
      expect(gateway.deps.dispatcher.poolIfAny('echo')).toBeUndefined();
      expect(gateway.deps.host.live()).toEqual([]);
      socket.destroy();
    } finally {
      if (!closed) await gateway.close();
      rmSync(gateway.stateDir, { recursive: true, force: true });
    }
  });

  it('a call still waiting when the sandboxes it waited for were retired is served during the shutdown', async () => {
    const gateway = await startTestGateway('retired', { shutdownGraceMs: '30000' });
    let closed = false;
    try {
      expect((await deployFiles(gateway, 'echo', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","maxConcurrency":2,"minWarm":2,"queueMax":100}' })).status).toBe(201);
      const leaving = [new AbortController(), new AbortController()];
      const running = leaving.map((caller) => fetch(`${gateway.url}/fn/echo/sleep?ms=3000`, { method: 'POST', signal: caller.signal }).catch((error: Error) => error.name));
      await sleep(300);
      const waiting = [0, 1].map((i) => fetch(`${gateway.url}/fn/echo`, { method: 'POST', body: `waiting-${i}` }));
      await sleep(100);
      // The two running calls are cancelled: their sandboxes go, and the shutdown begins at once.
      for (const caller of leaving) caller.abort();
      expect(await Promise.all(running)).toEqual(['AbortError', 'AbortError']);
      const started = Date.now();
      const closing = gateway.close();
      const answers = await Promise.all(waiting.map(async (p) => {
        const response = await p;
        return { status: response.status, body: ((await response.json()) as { body?: string }).body };
      }));
      await closing;
      closed = true;
      expect(answers).toEqual([{ status: 200, body: 'waiting-0' }, { status: 200, body: 'waiting-1' }]);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      if (!closed) await gateway.close();
      rmSync(gateway.stateDir, { recursive: true, force: true });
    }
  });
});
