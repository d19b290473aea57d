// The gateway's --park-ahead: off by default; on, /healthz shows the sandbox
// parked ahead, calls are answered as before, and the stop leaves nothing.
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { ParkedSandboxInfo } from '../../src/sandbox/index.js';
import { fnboxCgroupDirs } from '../support/host-state.js';
import { deployFiles, NODE_ECHO, startTestGateway } from '../support/gateway.js';

async function parked(url: string): Promise<ParkedSandboxInfo[]> {
  return ((await (await fetch(`${url}/healthz`)).json()) as { parked: ParkedSandboxInfo[] }).parked;
}

describe('--park-ahead', () => {
  it('is off by default: nothing is parked', async () => {
    const gateway = await startTestGateway('park-off');
    try {
      expect((await deployFiles(gateway, 'echo', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","minWarm":1}' })).status).toBe(201);
      await gateway.deps.host.idle();
      expect(await parked(gateway.url)).toEqual([]);
    } finally {
      await gateway.stop();
    }
  });

  it('on, a sandbox is parked in the shape of the latest boot, calls work, and the stop leaves nothing of it', async () => {
    const gateway = await startTestGateway('park-on', { parkAhead: '1', spares: '0' });
    let stopped = false;
    try {
      expect((await deployFiles(gateway, 'echo', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","minWarm":1}' })).status).toBe(201);
      await gateway.deps.host.idle();
      const [one] = await parked(gateway.url);
      expect(one).toBeDefined();
      for (const dir of one!.cgroupDirs) expect(existsSync(dir)).toBe(true);
      expect(existsSync(`/proc/${one!.initPid}`)).toBe(true);
      // Two calls at once: the function's second sandbox runs in the parked one.
      const calls = await Promise.all([0, 1].map(() => fetch(`${gateway.url}/fn/echo/sleep?ms=300`, { method: 'POST', body: 'x' })));
      for (const call of calls) expect(call.status).toBe(200);
      for (let i = 0; i < 100 && gateway.deps.host.live().every((sb) => sb.id !== one!.id); i++) await sleep(20);
      expect(gateway.deps.host.live().find((sb) => sb.id === one!.id)?.bootedAhead).toBe(true);
      await gateway.stop();
      stopped = true;
      expect(existsSync(`/proc/${one!.initPid}`)).toBe(false);
      expect(fnboxCgroupDirs(gateway.deps.host.cgroupParentName)).toEqual([]);
    } finally {
      if (!stopped) await gateway.stop();
    }
  });
});
