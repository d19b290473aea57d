// SIGTERM: stop accepting, finish the calls in flight, destroy every
// sandbox, leave nothing behind.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { TEST_IMAGE_DIR, tempDir } from '../support/env.js';
import { deployFiles, NODE_ECHO } from '../support/gateway.js';
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
});
