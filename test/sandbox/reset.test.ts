// A fresh root per call on a warm process (DESIGN.md §2).
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox, SandboxHost } from '../../src/sandbox/index.js';
import { image, openTestHost, tempDir } from '../support/env.js';
import { hostMounts } from '../support/host-state.js';

let host: SandboxHost;
let cleanup: () => Promise<void>;
let codeLayer: string;

function hashTree(dir: string): string {
  const hash = createHash('sha256');
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name);
      const st = statSync(full, { throwIfNoEntry: false });
      hash.update(`${full} ${st?.mode} ${st?.size}\n`);
      if (st?.isDirectory()) walk(full);
      else if (st?.isFile()) hash.update(readFileSync(full));
    }
  };
  walk(dir);
  return hash.digest('hex');
}

/** The sandbox's output, as complete lines, appended as they arrive. */
function outputLines(sandbox: Sandbox): string[] {
  const lines: string[] = [];
  let partial = '';
  sandbox.log!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  sandbox.log!.resume();
  return lines;
}

/** A shell that answers "present"/"absent" for /tmp/x and /code/data.txt each time it is poked. */
async function bootProbe(): Promise<{ sandbox: Sandbox; lines: string[] }> {
  const script = [
    'echo "pid $$"',
    // Written after the test's first reset: the boot layer stays pinned by the
    // shell's own executable mappings, later layers are freed on reset.
    'sleep 1',
    'echo changed > /code/data.txt',
    'dd if=/dev/zero of=/tmp/x bs=1M count=8 2>&1 | tail -1; echo "dd done"',
    'echo written',
    'while read -r _; do',
    '  if [ -e /tmp/x ]; then echo "tmp present"; else echo "tmp absent"; fi',
    '  echo "code $(cat /code/data.txt) pid $$"',
    'done',
  ].join('\n');
  const sandbox = await host.boot({
    layers: [codeLayer, image('shell').rootfs],
    argv: ['/bin/sh', '-c', `while :; do sleep 0.02; echo; done | (${script})`],
    captureLogs: true,
  });
  const lines = outputLines(sandbox);
  // Once both sides of the pipeline run: a process forked during a swap is killed (stale root).
  await waitFor(lines, (l) => l.startsWith('pid '));
  await sandbox.resetRoot({ force: true });
  return { sandbox, lines };
}

/** Waits for a matching line at or after index `from`; returns it and the index after it. */
async function waitFor(lines: string[], predicate: (line: string) => boolean, from = 0): Promise<string> {
  const found = await waitForIndex(lines, predicate, from);
  return lines[found]!;
}

async function waitForIndex(lines: string[], predicate: (line: string) => boolean, from = 0): Promise<number> {
  for (let i = 0; i < 300; i++) {
    const index = lines.findIndex((line, at) => at >= from && predicate(line));
    if (index >= 0) return index;
    await sleep(10);
  }
  throw new Error(`no matching line in: ${lines.slice(0, 8).join(' | ')} … ${lines.slice(-6).join(' | ')}`);
}

beforeAll(async () => {
  ({ host, cleanup } = await openTestHost('reset'));
  codeLayer = tempDir('code-layer');
  mkdirSync(join(codeLayer, 'code'));
  // World-writable so the sandbox user may change it (a copy-up into the upperdir).
  writeFileSync(join(codeLayer, 'code', 'data.txt'), 'original\n');
  chmodSync(join(codeLayer, 'code', 'data.txt'), 0o666);
});
afterAll(async () => {
  await cleanup();
  rmSync(codeLayer, { recursive: true, force: true });
});

/**
 * The monitor builds the next layer just after it answers a reset, holding a
 * few fds meanwhile; count once the number has stopped moving (and the
 * monitor is asleep in its poll loop).
 */
async function settledFdCount(pid: number): Promise<number> {
  let last = -1;
  for (let i = 0; i < 100; i++) {
    await sleep(20);
    const count = readdirSync(`/proc/${pid}/fd`).length;
    const sleeping = /^State:\s+S/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (count === last && sleeping) return count;
    last = count;
  }
  throw new Error(`the monitor's fd count never settled (last ${last})`);
}

describe('resetRoot', () => {
  it('a long-lived process no longer sees what it wrote, keeps its PID, and the lowerdirs are untouched', async () => {
    const lowerBefore = [hashTree(codeLayer), hashTree(image('shell').rootfs)];
    const { sandbox, lines } = await bootProbe();
    try {
      const pidLine = await waitFor(lines, (l) => l.startsWith('pid '));
      await waitFor(lines, (l) => l === 'written');
      const present = await waitForIndex(lines, (l) => l === 'tmp present', lines.length);
      expect(await waitFor(lines, (l) => l.startsWith('code '), present)).toBe(`code changed ${pidLine}`);
      expect(sandbox.isDirty()).toBe(true);
      const hostPid = sandbox.pid;
      const memoryBefore = sandbox.usage().memoryCurrentBytes;

      const result = await sandbox.resetRoot();
      expect(result.skipped).toBe(false);

      const absent = await waitForIndex(lines, (l) => l === 'tmp absent', lines.length);
      expect(await waitFor(lines, (l) => l.startsWith('code '), absent)).toBe(`code original ${pidLine}`);
      expect(sandbox.pid).toBe(hostPid);
      expect(sandbox.isDirty()).toBe(false);
      // The old layer's tmpfs was freed: its 8 MiB no longer count against the sandbox.
      // (Freed when its last user goes: a `sleep` started before the swap may hold it a moment.)
      let memoryAfter = sandbox.usage().memoryCurrentBytes;
      for (let i = 0; i < 100 && memoryAfter >= memoryBefore - 6 * 1024 * 1024; i++) {
        await sleep(20);
        memoryAfter = sandbox.usage().memoryCurrentBytes;
      }
      expect(memoryAfter).toBeLessThan(memoryBefore - 6 * 1024 * 1024);
      expect([hashTree(codeLayer), hashTree(image('shell').rootfs)]).toEqual(lowerBefore);
    } finally {
      await sandbox.destroy();
    }
  });

  it('a process using /dev and /proc while its root is swapped never finds them missing', async () => {
    const sandbox = await host.boot({
      layers: [image('shell').rootfs],
      // `true <` opens the device and reads nothing (a `read` from /dev/zero never meets a newline); one dot per round.
      argv: ['/bin/sh', '-c', 'while :; do true < /dev/zero || echo FAIL-ZERO; [ -e /dev/null ] || echo FAIL-DEV; [ -e /proc/self/stat ] || echo FAIL-PROC; echo .; done'],
      captureLogs: true,
    });
    let output = '';
    sandbox.log!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    sandbox.log!.resume();
    const rounds = (): number => output.split('.').length - 1;
    try {
      while (rounds() === 0) await sleep(5);
      const before = rounds();
      for (let i = 0; i < 100; i++) await sandbox.resetRoot({ force: true });
      const during = rounds() - before;
      const afterResets = rounds();
      await sleep(50);
      expect(output.replace(/[.\n]/g, '')).toBe('');
      // The loop really ran while the roots were swapped, and runs on after
      // them (a busy sandbox is held still for each swap, then let go).
      expect(during).toBeGreaterThan(100);
      expect(rounds()).toBeGreaterThan(afterResets);
      expect(sandbox.alive).toBe(true);
    } finally {
      await sandbox.destroy();
    }
  });

  it('after a swap no process of the sandbox is left on the old root, even one forked mid-swap', async () => {
    const sandbox = await host.boot({
      layers: [image('shell').rootfs],
      argv: ['/bin/sh', '-c', 'while :; do sleep 0.3 & sleep 0.005; done'],
      limits: { pidsMax: 256 },
    });
    try {
      await sleep(300);
      for (let i = 0; i < 30; i++) {
        await sandbox.resetRoot({ force: true });
        const rootDev = statSync(`/proc/${sandbox.initPid}/root`).dev;
        for (const pid of sandbox.meter.processes()) {
          let dev: number | undefined;
          try {
            dev = statSync(`/proc/${pid}/root`).dev;
          } catch {
            continue; // exited, or killed for holding the old root
          }
          expect(dev, `pid ${pid}`).toBe(rootDev);
        }
      }
    } finally {
      await sandbox.destroy();
    }
  });

  it('is skipped when nothing was written', async () => {
    const sandbox = await host.boot({ layers: [image('shell').rootfs], argv: ['/bin/sleep', '30'] });
    try {
      expect(sandbox.isDirty()).toBe(false);
      expect(await sandbox.resetRoot()).toEqual({ skipped: true, us: 0, startedUs: 0, staleKilled: 0 });
    } finally {
      await sandbox.destroy();
    }
  });

  it('many resets leak no file descriptors in the monitor, and no mounts in the sandbox or on the host', async () => {
    const sandbox = await host.boot({ layers: [image('shell').rootfs], argv: ['/bin/sleep', '30'] });
    // Mount points only: ids and fd numbers in the options change with each layer.
    const sandboxMounts = (): string[] => readFileSync(`/proc/${sandbox.initPid}/mountinfo`, 'utf8').trim().split('\n').map((line) => line.split(' ')[4]!);
    try {
      await sandbox.resetRoot({ force: true });
      const fds = await settledFdCount(sandbox.monitorPid);
      const mounts = sandboxMounts();
      const onHost = hostMounts();
      for (let i = 0; i < 50; i++) await sandbox.resetRoot({ force: true });
      expect(await settledFdCount(sandbox.monitorPid)).toBe(fds);
      // Each old layer (its overlay and its tmpfs, which joins the old root to be detached with it) is gone.
      expect(sandboxMounts()).toEqual(mounts);
      expect(mounts.filter((point) => point.includes('.fnbox'))).toEqual([]);
      expect(hostMounts()).toEqual(onHost);
    } finally {
      await sandbox.destroy();
    }
  });
});

describe('adopt (a spare sandbox becomes a function\'s)', () => {
  /** A shell on an empty code layer that reports what /code holds and its hostname each time it is poked. */
  async function bootSpareProbe(): Promise<{ sandbox: Sandbox; lines: string[]; emptyLayer: string }> {
    const emptyLayer = tempDir('empty-layer');
    mkdirSync(join(emptyLayer, 'code'));
    const script = 'while read -r _; do echo "code $(cat /code/data.txt 2>/dev/null || echo none) host $(cat /proc/sys/kernel/hostname) pid $$"; done';
    const sandbox = await host.boot({
      layers: [emptyLayer, image('shell').rootfs],
      argv: ['/bin/sh', '-c', `while :; do sleep 0.02; echo; done | (${script})`],
      hostname: 'spare-probe',
      captureLogs: true,
    });
    const lines = outputLines(sandbox);
    return { sandbox, lines, emptyLayer };
  }

  it('swaps in the code layer and hostname under the running process (same PID), on a fresh root', async () => {
    const { sandbox, lines, emptyLayer } = await bootSpareProbe();
    try {
      const before = await waitFor(lines, (l) => l.startsWith('code none host spare-probe pid '));
      const pid = before.split(' pid ')[1];
      const hostPid = sandbox.pid;
      // The writable layer is reached by one path for the sandbox's life; a new layer is a new tmpfs.
      const upperBefore = statSync(sandbox.upperDir).dev;

      await sandbox.adopt(codeLayer, 'adopted-fn');

      expect(await waitFor(lines, (l) => l.startsWith('code original '), lines.length)).toBe(`code original host adopted-fn pid ${pid}`);
      expect(sandbox.pid).toBe(hostPid);
      expect(sandbox.spec.lowers[0]).toBe(codeLayer);
      expect(sandbox.spec.hostname).toBe('adopted-fn');
      // The kernel's view from outside: the init's root holds the new code; the UTS namespace has the new name.
      expect(readFileSync(`/proc/${sandbox.initPid}/root/code/data.txt`, 'utf8')).toBe('original\n');
      expect(statSync(sandbox.upperDir).dev).not.toBe(upperBefore);
      expect(readdirSync(join(emptyLayer, 'code'))).toEqual([]);
    } finally {
      await sandbox.destroy();
      rmSync(emptyLayer, { recursive: true, force: true });
    }
  });

  it('a bad code layer or hostname is refused and the sandbox keeps running as it was', async () => {
    const { sandbox, lines, emptyLayer } = await bootSpareProbe();
    try {
      await waitFor(lines, (l) => l.startsWith('code none host spare-probe'));
      await expect(sandbox.adopt(join(codeLayer, 'missing'), 'fn')).rejects.toMatchObject({ code: 'SandboxError', details: { step: 'open_code_layer' } });
      await expect(sandbox.adopt(codeLayer, 'two words')).rejects.toMatchObject({ code: 'SandboxError' });
      await expect(sandbox.adopt('relative/path', 'fn')).rejects.toMatchObject({ code: 'SandboxError' });
      expect(sandbox.alive).toBe(true);
      expect(await waitFor(lines, (l) => l.startsWith('code '), lines.length)).toMatch(/^code none host spare-probe pid /);
      expect(sandbox.spec.lowers[0]).toBe(emptyLayer);
    } finally {
      await sandbox.destroy();
      rmSync(emptyLayer, { recursive: true, force: true });
    }
  });
});
