// Limits that hold, read back from the kernel's own counters.
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxHost } from '../../src/sandbox/index.js';
import { image, openTestHost, run, sh } from '../support/env.js';

let host: SandboxHost;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ host, cleanup } = await openTestHost('limits'));
});
afterAll(() => cleanup());

describe('limits', () => {
  it('a memory hog is OOM-killed and reported as such, from the kernel counter', async () => {
    const node = image('node');
    const { exit } = await run(host, {
      layers: [node.rootfs],
      argv: [node.interpreters.node!.executable, '-e', 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));'],
      limits: { memoryBytes: 64 * 1024 * 1024 },
    });
    expect(exit.reason).toBe('oom');
    expect(exit.oomKills).toBeGreaterThan(0);
    expect(exit.signal).toBe(9);
  });

  it('a fork bomb stops at pids.max and the host stays responsive', async () => {
    const sandbox = await host.boot({
      layers: [image('shell').rootfs],
      // Every process waits for its two children, so the count only grows until pids.max
      // stops it, however slow forks are (a bomb whose processes exit as they fork can
      // hover below the limit in the emulated VMs). The program itself forks once, before
      // the bomb grows, then becomes sleep: a shell whose fork fails exits, and the program
      // must live until destroy (it once ran the bomb itself, and its second fork lost that
      // race on a loaded machine).
      argv: ['/bin/sh', '-c', 'bomb() { bomb & bomb & wait; }; bomb & exec sleep 30'],
      limits: { pidsMax: 32 },
    });
    try {
      let hits = 0;
      // Up to 30 s: forks are slow in the emulated (TCG) VMs of the cgroup-v1/v2 suites.
      for (let i = 0; i < 1500 && hits === 0; i++) {
        await sleep(20);
        hits = sandbox.events().pidsMaxHits;
      }
      expect(hits).toBeGreaterThan(0);
      expect(sandbox.usage().pidsCurrent).toBeLessThanOrEqual(32);
      const started = Date.now();
      execFileSync('/bin/true');
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await sandbox.destroy();
    }
    expect((await sandbox.exited).reason).toBe('killed');
  });

  it('a CPU spinner is throttled to its quota', async () => {
    const sandbox = await host.boot({
      layers: [image('shell').rootfs],
      argv: ['/bin/sh', '-c', 'while :; do :; done'],
      limits: { cpus: 0.2 },
    });
    try {
      const before = sandbox.usage();
      const started = Date.now();
      await sleep(1000);
      const after = sandbox.usage();
      const wallUs = (Date.now() - started) * 1000;
      expect(after.nrThrottled).toBeGreaterThan(before.nrThrottled);
      expect(after.throttledUs).toBeGreaterThan(0);
      // 0.2 of a core over the window, with slack for period boundaries.
      expect(after.cpuUsageUs - before.cpuUsageUs).toBeLessThan(wallUs * 0.35);
      expect(after.cpuUsageUs - before.cpuUsageUs).toBeGreaterThan(wallUs * 0.05);
    } finally {
      await sandbox.destroy();
    }
  });
});

describe('why a sandbox died', () => {
  it('reports an exit code', async () => {
    const { exit } = await sh(host, 'exit 3');
    expect(exit).toMatchObject({ reason: 'exited', code: 3, oomKills: 0 });
  });

  it('reports a signal', async () => {
    const { exit } = await sh(host, 'kill -SEGV $$');
    expect(exit).toMatchObject({ reason: 'signaled', signal: 11 });
  });

  it('reports a program that cannot be executed, naming the step', async () => {
    await expect(host.boot({ layers: [image('shell').rootfs], argv: ['/no/such/program'] })).rejects.toMatchObject({
      code: 'SandboxError',
      details: { step: 'execve', errno: 2 },
    });
  });
});
