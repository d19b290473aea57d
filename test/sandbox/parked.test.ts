// Sandboxes booted ahead (src/sandbox/parked.ts): a boot like the last one
// runs in one, and the kernel sees the sandbox a boot from nothing makes.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ParkedSandboxInfo, SandboxHost } from '../../src/sandbox/index.js';
import { image, openTestHost, sh, tempDir } from '../support/env.js';
import { fnboxCgroupDirs, hostMounts, leftoversInRange } from '../support/host-state.js';

let host: SandboxHost;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ host, cleanup } = await openTestHost('parked'));
});
afterAll(() => cleanup());

async function parkedOne(): Promise<ParkedSandboxInfo> {
  for (let i = 0; i < 1000 && host.parked().length === 0; i++) await sleep(5);
  const [parked] = host.parked();
  expect(parked).toBeDefined();
  return parked!;
}

/** Field 19 of /proc/PID/stat: the nice value. */
function nice(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

function status(pid: number, field: string): string {
  return readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(.*)$`, 'm'))?.[1] ?? '';
}

function programOf(initPid: number): number {
  return Number(readFileSync(`/proc/${initPid}/task/${initPid}/children`, 'utf8').trim());
}

describe('sandboxes booted ahead', () => {
  it('wait with every privilege dropped and at the lowest priority, before their program is known', async () => {
    await sh(host, 'exit 0');
    const parked = await parkedOne();
    const program = programOf(parked.initPid);
    expect(program).toBeGreaterThan(0);
    // Everything but the execve is done: the waiting process holds nothing a program would not.
    expect(status(program, 'CapEff')).toBe('0000000000000000');
    expect(status(program, 'CapBnd')).toBe('0000000000000000');
    expect(status(program, 'NoNewPrivs')).toBe('1');
    expect(status(program, 'Seccomp')).toBe('2');
    expect(status(program, 'Uid').split(/\s+/)[0]).toBe(String(parked.hostIdBase + 1000));
    for (const pid of [parked.monitorPid, parked.initPid, program]) expect(nice(pid), `nice of ${pid}`).toBe(19);
    // In its own cgroup already, with its own namespaces.
    for (const dir of parked.cgroupDirs) expect(readFileSync(`${dir}/cgroup.procs`, 'utf8')).toContain(String(program));
    expect(readFileSync(`/proc/${program}/uid_map`, 'utf8').trim().split(/\s+/)).toEqual(['0', String(parked.hostIdBase), '65536']);
  });

  it('a boot of the same shape runs in one: its program, environment, directory and hostname', async () => {
    await sh(host, 'exit 0');
    const parked = await parkedOne();
    const script = 'echo "$(hostname) $(pwd) $GREETING"; cut -d" " -f19 /proc/self/stat; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status';
    const { output, exit, sandbox } = await sh(host, script, { env: { GREETING: 'hello' }, cwd: '/tmp', hostname: 'claimed' });
    expect(sandbox.id).toBe(parked.id);
    expect(sandbox.bootedAhead).toBe(true);
    expect(exit).toMatchObject({ reason: 'exited', code: 0 });
    const [first, priority, ...rest] = output.trim().split('\n');
    expect(first).toBe('claimed /tmp hello');
    // Its priority is the usual one once it runs.
    expect(priority).toBe('0');
    expect(rest).toEqual(['CapEff:\t0000000000000000', 'NoNewPrivs:\t1', 'Seccomp:\t2']);
  });

  it('a boot that comes while its sandbox is being parked waits for that one rather than booting beside it', async () => {
    await sh(host, 'exit 0');
    await host.idle();
    // The parked one goes to this boot; the next is parked while it runs.
    expect((await sh(host, 'exit 0')).sandbox.bootedAhead).toBe(true);
    const { sandbox, output } = await sh(host, 'echo again');
    expect(sandbox.bootedAhead).toBe(true);
    expect(output).toBe('again\n');
  });

  it('a start bigger than one read of the control stream reaches the program whole', async () => {
    await sh(host, 'exit 0');
    await parkedOne();
    // ~100 KB of environment: the start command arrives in many reads.
    const env = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`BIG_${i}`, String(i % 10).repeat(2000)]));
    const { output, sandbox } = await sh(host, 'for v in BIG_0 BIG_49; do eval "printf %s \\$$v" | wc -c; done; eval "printf %s \\$BIG_49" | head -c 3', { env });
    expect(sandbox.bootedAhead).toBe(true);
    expect(output.split('\n').map((line) => line.trim())).toEqual(['2000', '2000', '999']);
  });

  it('a claimed sandbox gets the limits of its boot written into its cgroup', async () => {
    await sh(host, 'exit 0');
    const parked = await parkedOne();
    const sandbox = await host.boot({ layers: [image('shell').rootfs], argv: ['/bin/sleep', '30'], captureLogs: true, limits: { memoryBytes: 80 * 1024 * 1024, cpus: 0.25 } });
    try {
      expect(sandbox.id).toBe(parked.id);
      const read = (path: string): string => readFileSync(path, 'utf8').trim();
      if (host.cgroups.mode === 'v2') {
        expect(read(`${sandbox.cgroup.primaryDir}/memory.max`)).toBe(String(80 * 1024 * 1024));
        expect(read(`${sandbox.cgroup.primaryDir}/cpu.max`)).toBe('25000 100000');
      } else {
        const file = (name: string): string => read(`${sandbox.cgroup.dirs.find((dir) => existsSync(`${dir}/${name}`))}/${name}`);
        expect(file('memory.limit_in_bytes')).toBe(String(80 * 1024 * 1024));
        expect(file('cpu.cfs_quota_us')).toBe('25000');
      }
      for (const pid of [sandbox.monitorPid, sandbox.initPid, sandbox.pid!]) expect(nice(pid)).toBe(0);
    } finally {
      await sandbox.destroy();
    }
  });

  it('one that dies while parked is not used, and leaves nothing behind', async () => {
    await sh(host, 'exit 0');
    const parked = await parkedOne();
    const mountsBefore = hostMounts();
    process.kill(parked.initPid, 'SIGKILL');
    for (let i = 0; i < 400 && host.parked().some((p) => p.id === parked.id); i++) await sleep(5);
    expect(host.parked().map((p) => p.id)).not.toContain(parked.id);
    for (let i = 0; i < 400 && parked.cgroupDirs.some(existsSync); i++) await sleep(5);
    expect(parked.cgroupDirs.filter(existsSync)).toEqual([]);
    expect(existsSync(`/proc/${parked.monitorPid}`)).toBe(false);
    expect(leftoversInRange(parked.hostIdBase)).toEqual([]);
    expect(hostMounts()).toEqual(mountsBefore);
    // The next boot runs elsewhere (in one parked since, or booted from nothing).
    const { output, sandbox } = await sh(host, 'echo fine');
    expect(sandbox.id).not.toBe(parked.id);
    expect(output).toBe('fine\n');
  });

  it('a boot of another shape lets the parked one go and parks its own', async () => {
    await sh(host, 'exit 0');
    const parked = await parkedOne();
    // A bigger writable layer is another sandbox (another tmpfs size): it cannot be claimed.
    const other = await sh(host, 'exit 0', { limits: { tmpBytes: 32 * 1024 * 1024 } });
    expect(other.sandbox.id).not.toBe(parked.id);
    for (let i = 0; i < 400 && (parked.cgroupDirs.some(existsSync) || host.parked().length === 0); i++) await sleep(5);
    expect(parked.cgroupDirs.filter(existsSync)).toEqual([]);
    expect(leftoversInRange(parked.hostIdBase)).toEqual([]);
    const next = await parkedOne();
    expect(next.id).not.toBe(parked.id);
    const again = await sh(host, 'exit 0', { limits: { tmpBytes: 32 * 1024 * 1024 } });
    expect(again.sandbox.id).toBe(next.id);
  });

  it('a parking that fails (its layer is gone) is not tried again until the next boot', async () => {
    const layer = tempDir('parked-layer');
    mkdirSync(join(layer, 'code'));
    await sh(host, 'exit 0', { layers: [layer, image('shell').rootfs] });
    // The boot is done; the sandbox parked in its shape (or being parked) goes with the layer's removal.
    await host.idle();
    for (const parked of host.parked()) process.kill(parked.initPid, 'SIGKILL');
    rmSync(layer, { recursive: true, force: true });
    // Let-gos refill: the parking they start fails (no such layer), and the host comes to rest.
    await host.idle();
    await sleep(50);
    await host.idle();
    expect(host.parked()).toEqual([]);
    // A boot of another shape parks again.
    await sh(host, 'exit 0');
    expect((await parkedOne()).id).toBeTruthy();
  });

  it('closing the host lets every parked sandbox go', async () => {
    const { host: closing, cleanup: closeIt } = await openTestHost('parked-close');
    await sh(closing, 'exit 0');
    for (let i = 0; i < 1000 && closing.parked().length === 0; i++) await sleep(5);
    const [parked] = closing.parked();
    expect(parked).toBeDefined();
    await closeIt();
    expect(existsSync(`/proc/${parked!.monitorPid}`)).toBe(false);
    expect(existsSync(`/proc/${parked!.initPid}`)).toBe(false);
    expect(fnboxCgroupDirs(closing.cgroupParentName)).toEqual([]);
    expect(leftoversInRange(parked!.hostIdBase)).toEqual([]);
  });
});
