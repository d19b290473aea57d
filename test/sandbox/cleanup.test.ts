// Leave nothing behind: after destroy, after a crash, after the gateway is
// SIGKILLed, and after a thousand boots.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { PROJECT_ROOT, SandboxHost } from '../../src/sandbox/index.js';
import { DEFAULT_ID_RANGES } from '../../src/sandbox/ids.js';
import { NETNS_POOL } from '../../src/sandbox/launcher.js';
import { image, openTestHost, sh, tempDir } from '../support/env.js';
import { fnboxCgroupDirs, hostMounts, hostProcesses, leftoversInRange, sandboxCgroupDirs, snapshot } from '../support/host-state.js';

let host: SandboxHost;
let stateDir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ host, stateDir, cleanup } = await openTestHost('cleanup'));
});
afterAll(() => cleanup());

/** Cgroup dirs of this host's own sandboxes (not its parents). */
function sandboxCgroups(): string[] {
  return sandboxCgroupDirs(host).filter((dir) => !dir.endsWith(host.cgroupParentName));
}

function childrenOf(pid: number): number[] {
  return [...hostProcesses().keys()].filter((child) => {
    try {
      return readFileSync(`/proc/${child}/status`, 'utf8').match(/^PPid:\s+(\d+)/m)?.[1] === String(pid);
    } catch {
      return false;
    }
  });
}

/** The uid-range lock files that name `pid` as their owner. */
function lockFilesOf(pid: number): string[] {
  return readdirSync(DEFAULT_ID_RANGES.lockDir).filter((name) => {
    try {
      return readFileSync(join(DEFAULT_ID_RANGES.lockDir, name), 'utf8') === String(pid);
    } catch {
      return false; // removed meanwhile
    }
  });
}

/** How many of the zygote's open fds are of a kind (`pipe:`, `net:`). */
function zygoteFds(kind: string): number {
  const dir = `/proc/${host.launcher.zygotePid}/fd`;
  return readdirSync(dir).filter((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`).startsWith(kind);
    } catch {
      return false;
    }
  }).length;
}

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

describe('clean-up', () => {
  it('destroy removes every process, mount, cgroup, uid and directory', async () => {
    // Snapshots compare a host with nothing under way (a parking in flight holds a cgroup not yet counted as parked).
    await host.idle();
    const before = snapshot(stateDir, host);
    const shell = image('shell');
    const sandboxes = await Promise.all(
      Array.from({ length: 5 }, () => host.boot({ layers: [shell.rootfs], argv: ['/bin/sh', '-c', 'echo x > /tmp/x; sleep 60 & sleep 60'] })),
    );
    await sleep(50);
    await Promise.all(sandboxes.map((sb) => sb.resetRoot()));
    const pids = sandboxes.flatMap((sb) => [sb.monitorPid, sb.initPid, sb.pid!]);
    expect(pids.every(alive)).toBe(true);
    await Promise.all(sandboxes.map((sb) => sb.destroy()));
    await host.idle();

    expect(pids.filter(alive)).toEqual([]);
    expect(hostMounts()).toEqual(before.mounts);
    expect(sandboxCgroupDirs(host)).toEqual(before.cgroupDirs);
    expect(snapshot(stateDir, host).files).toEqual(before.files);
    for (const sb of sandboxes) expect(leftoversInRange(sb.hostIdBase)).toEqual([]);
    expect(host.live()).toEqual([]);
  });

  it('a sandbox that crashes is reaped and leaves nothing after destroy', async () => {
    await host.idle();
    const before = snapshot(stateDir, host);
    const { exit, sandbox } = await sh(host, 'sleep 60 & kill -KILL $$', {}, );
    await host.idle();
    expect(exit).toMatchObject({ reason: 'signaled', signal: 9 });
    expect(alive(sandbox.monitorPid)).toBe(false);
    expect(alive(sandbox.initPid)).toBe(false);
    expect(sandboxCgroupDirs(host)).toEqual(before.cgroupDirs);
    expect(hostMounts()).toEqual(before.mounts);
  });

  // FNBOX_TEST_CYCLES lowers the count where a boot is slow (the emulated pure-v2 VM).
  const cycles = Number(process.env.FNBOX_TEST_CYCLES ?? 1000);
  it(`${cycles} create/destroy cycles leave zero mounts, cgroups, directories and processes`, async () => {
    await host.idle();
    const before = snapshot(stateDir, host);
    const zygotePipesBefore = zygoteFds('pipe:');
    const shell = image('shell');
    let booted = 0;
    const idBases = new Set<number>();
    const worker = async (): Promise<void> => {
      while (booted < cycles) {
        booted++;
        const sandbox = await host.boot({ layers: [shell.rootfs], argv: ['/bin/true'] });
        idBases.add(sandbox.hostIdBase);
        await sandbox.destroy();
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    await host.idle();
    expect(booted).toBeGreaterThanOrEqual(cycles);
    expect(hostMounts()).toEqual(before.mounts);
    expect(sandboxCgroupDirs(host)).toEqual(before.cgroupDirs);
    expect(sandboxCgroups()).toEqual([]);
    // What the host keeps made ahead is at most its reserve, and empty.
    expect(host.reservedCgroups).toBeLessThanOrEqual(2);
    for (const dir of host.reservedCgroupDirs()) expect(readFileSync(join(dir, 'cgroup.procs'), 'utf8')).toBe('');
    expect(snapshot(stateDir, host).files).toEqual(before.files);
    // No monitor left under our zygote but a parked sandbox's, no process
    // under any uid range the cycles used.
    const parkedMonitors = host.parked().map((parked) => parked.monitorPid);
    expect(childrenOf(host.launcher.zygotePid!).filter((pid) => !parkedMonitors.includes(pid))).toEqual([]);
    expect(parkedMonitors.length).toBeLessThanOrEqual(1);
    // The zygote let go of every monitor's booting pipe, and holds no more
    // network namespaces made ahead than it was asked to.
    expect(zygoteFds('pipe:')).toBe(zygotePipesBefore);
    expect(zygoteFds('net:')).toBeLessThanOrEqual(NETNS_POOL + 1);
    // A range the cycles used may be in use again, by the sandbox parked for
    // the next boot (ranges are reused, src/sandbox/ids.ts): there only its
    // init and the program it forked may run.
    for (const base of idBases) {
      const parked = host.parked().find((p) => p.hostIdBase === base);
      const expected = parked ? [parked.initPid, ...childrenOf(parked.initPid)].sort() : [];
      expect(leftoversInRange(base).map((line) => Number(line.split(' ')[0])).sort()).toEqual(expected);
    }
  }, 600_000);
});

describe('closing the host while sandboxes boot', () => {
  it('waits for the boots in flight and leaves no cgroup, mount, process or directory', async () => {
    const { host: closing, stateDir: closingState, cleanup: closeAgain } = await openTestHost('close-race');
    try {
      const shell = image('shell');
      const boots = Array.from({ length: 8 }, () => closing.boot({ layers: [shell.rootfs], argv: ['/bin/sh', '-c', 'sleep 60'] }));
      const outcomes = Promise.allSettled(boots);
      // Close with boots at every stage: some answered, some still in the launcher.
      await Promise.race(boots);
      await closing.close();
      const settled = await outcomes;
      const monitors = settled.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value.monitorPid, outcome.value.initPid] : []));
      expect(monitors.filter(alive)).toEqual([]);
      expect(fnboxCgroupDirs(closing.cgroupParentName)).toEqual([]);
      expect(hostMounts().filter((m) => m.includes('fnbox'))).toEqual([]);
      expect(readdirSync(closingState)).toEqual([]);
      // A boot asked for after the close is refused, and makes nothing.
      await expect(closing.boot({ layers: [shell.rootfs], argv: ['/bin/true'] })).rejects.toMatchObject({ code: 'Unavailable' });
      expect(fnboxCgroupDirs(closing.cgroupParentName)).toEqual([]);
    } finally {
      await closeAgain().catch(() => rmSync(closingState, { recursive: true, force: true }));
    }
  });
});

describe('after the gateway is SIGKILLed', () => {
  it('its sandboxes die with it and the next start sweeps what was left', async () => {
    const killedState = tempDir('sigkill');
    // Gone even when an expectation fails midway.
    onTestFinished(() => rmSync(killedState, { recursive: true, force: true }));
    const distHost = join(PROJECT_ROOT, 'dist', 'src', 'sandbox', 'index.js');
    const script = `
      import { SandboxHost } from ${JSON.stringify(distHost)};
      const host = await SandboxHost.open({ stateDir: ${JSON.stringify(killedState)} });
      const sbs = [];
      for (let i = 0; i < 3; i++) sbs.push(await host.boot({ layers: [${JSON.stringify(image('shell').rootfs)}], argv: ['/bin/sh', '-c', 'sleep 600 & sleep 600'] }));
      // What it makes ahead is made: the counts below hold until it dies.
      await host.idle();
      const parked = host.parked().map((p) => ({ pids: [p.monitorPid, p.initPid], cgroups: p.cgroupDirs, base: p.hostIdBase }));
      console.log(JSON.stringify({ reserved: host.reservedCgroups, sandboxes: sbs.map((sb) => ({ pids: [sb.monitorPid, sb.initPid, sb.pid], cgroups: sb.cgroup.dirs, base: sb.hostIdBase })), parked }));
      setInterval(() => {}, 1000);`;
    const gateway = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    gateway.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    for (let i = 0; i < 500 && !out.includes('\n'); i++) await sleep(20);
    type Held = Array<{ pids: number[]; cgroups: string[]; base: number }>;
    const { reserved, sandboxes: running, parked } = JSON.parse(out) as { reserved: number; sandboxes: Held; parked: Held };
    // A sandbox parked for the next boot dies and is swept like a running one.
    expect(parked.length).toBe(1);
    const sandboxes = [...running, ...parked];
    const pids = sandboxes.flatMap((sb) => sb.pids);
    expect(pids.every(alive)).toBe(true);

    gateway.kill('SIGKILL');
    // Die-with-parent: monitor, init and program go without anyone cleaning up.
    for (let i = 0; i < 200 && pids.some(alive); i++) await sleep(10);
    expect(pids.filter(alive)).toEqual([]);
    for (const sb of sandboxes) expect(leftoversInRange(sb.base)).toEqual([]);
    // Detached layers went with their last process: no mount ever appeared on the host.
    expect(hostMounts().filter((m) => m.includes('fnbox'))).toEqual([]);
    // The cgroups stay until the next start with the same state dir sweeps them.
    expect(sandboxes.flatMap((sb) => sb.cgroups).every((dir) => existsSync(dir))).toBe(true);

    const next = await SandboxHost.open({ stateDir: killedState });
    try {
      // The sandboxes' cgroups (the parked one's too), and the empty ones made ahead for the next boots.
      expect(reserved).toBeGreaterThan(0);
      expect(next.swept).toBe(sandboxes.length + reserved);
      expect(sandboxes.flatMap((sb) => sb.cgroups).filter((dir) => existsSync(dir))).toEqual([]);
      // Its uid-range lock files went too (src/sandbox/ids.ts), those of ranges in use and of ranges waiting for reuse.
      expect(lockFilesOf(gateway.pid!)).toEqual([]);
    } finally {
      // A failed expectation must not leave this host's cgroups and state dir behind.
      await next.close();
    }
    expect(fnboxCgroupDirs(next.cgroupParentName)).toEqual([]);
    expect(readdirSync(killedState)).toEqual([]);
  });
});
