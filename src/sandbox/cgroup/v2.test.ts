// The pure-v2 driver against an in-memory cgroupfs that follows
// cgroup-v2.rst: this machine is hybrid, so this (and the VM run of
// issue 7) is how the v2 driver is checked.
import { describe, expect, it } from 'vitest';
import { FakeCgroupFs } from '../../../test/support/fake-cgroupfs.js';
import { V2CgroupDriver } from './v2.js';

const SELF = '/sys/fs/cgroup/user.slice/session-1.scope';

function hostWith(processes: number[]): { fs: FakeCgroupFs; driver: V2CgroupDriver } {
  const fs = new FakeCgroupFs().addV2Root('/sys/fs/cgroup', ['cpuset', 'cpu', 'io', 'memory', 'pids']);
  fs.write('/sys/fs/cgroup/cgroup.subtree_control', '+cpu +memory +pids');
  fs.addExisting('/sys/fs/cgroup/user.slice');
  fs.write('/sys/fs/cgroup/user.slice/cgroup.subtree_control', '+cpu +memory +pids');
  fs.addExisting(SELF);
  for (const pid of processes) fs.addProcess(SELF, pid);
  const driver = new V2CgroupDriver({ mode: 'v2', unifiedSelf: SELF, unifiedRoot: '/sys/fs/cgroup', v1Self: new Map() }, 'fnbox-test', fs);
  return { fs, driver };
}

describe('V2CgroupDriver', () => {
  it('moves the processes of its own cgroup into a leaf before delegating (no internal processes)', () => {
    const { fs } = hostWith([100, 101]);
    expect(fs.read(`${SELF}/cgroup.procs`)).toBe('');
    expect(fs.read(`${SELF}/fnbox-gateway/cgroup.procs`)).toBe('100\n101\n');
    expect(fs.read(`${SELF}/cgroup.subtree_control`).trim().split(' ').sort()).toEqual(['cpu', 'memory', 'pids']);
    expect(fs.read(`${SELF}/fnbox-test/cgroup.subtree_control`).trim().split(' ').sort()).toEqual(['cpu', 'memory', 'pids']);
  });

  it('started again from inside its own leaf, it finds the same parent (so a restart sweeps what was left)', () => {
    const { fs } = hostWith([100, 101]);
    const again = new V2CgroupDriver({ mode: 'v2', unifiedSelf: `${SELF}/fnbox-gateway`, unifiedRoot: '/sys/fs/cgroup', v1Self: new Map() }, 'fnbox-test', fs);
    expect(again.description).toBe(`cgroup v2: sandboxes under ${SELF}/fnbox-test`);
    expect(fs.exists(`${SELF}/fnbox-gateway/fnbox-gateway`)).toBe(false);
  });

  it('writes limits in the documented formats, swap off and group OOM on', () => {
    const { fs, driver } = hostWith([100]);
    const cg = driver.create('sb-1', { memoryBytes: 64 << 20, cpus: 0.5, cpuPeriodUs: 100_000, pidsMax: 32 });
    expect(cg).toMatchObject({ cloneInto: `${SELF}/fnbox-test/sb-1`, joinedByInit: [], primaryDir: `${SELF}/fnbox-test/sb-1` });
    const file = (name: string): string => fs.read(`${cg.primaryDir}/${name}`).trim();
    expect(file('memory.max')).toBe(String(64 << 20));
    expect(file('memory.swap.max')).toBe('0');
    expect(file('memory.oom.group')).toBe('1');
    expect(file('cpu.max')).toBe('50000 100000');
    expect(file('pids.max')).toBe('32');
    const uncapped = driver.create('sb-2', { memoryBytes: 1 << 20, cpuPeriodUs: 100_000, pidsMax: 4 });
    expect(fs.read(`${uncapped.primaryDir}/cpu.max`).trim()).toBe('max 100000');
  });

  it('reads usage and events from cpu.stat, memory.*, pids.*', () => {
    const { fs, driver } = hostWith([100]);
    const cg = driver.create('sb-1', { memoryBytes: 1 << 30, cpus: 1, cpuPeriodUs: 100_000, pidsMax: 32 });
    fs.setFile(`${cg.primaryDir}/cpu.stat`, 'usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 7\nnr_throttled 2\nthrottled_usec 900\n');
    fs.setFile(`${cg.primaryDir}/memory.current`, '4096\n');
    fs.setFile(`${cg.primaryDir}/memory.peak`, '8192\n');
    fs.setFile(`${cg.primaryDir}/pids.current`, '3\n');
    fs.setFile(`${cg.primaryDir}/memory.events`, 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 1\n');
    fs.setFile(`${cg.primaryDir}/pids.events`, 'max 5\n');
    expect(driver.usage(cg)).toEqual({ memoryCurrentBytes: 4096, memoryPeakBytes: 8192, cpuUsageUs: 5000, nrThrottled: 2, throttledUs: 900, pidsCurrent: 3 });
    expect(driver.events(cg)).toEqual({ oomKills: 1, pidsMaxHits: 5 });
    const meter = driver.meter(cg);
    expect(meter.begin()).toBe(5000);
    expect(meter.end()).toEqual({ cpuUsageUs: 5000, memoryPeakBytes: 4096 });
  });

  it('kills with cgroup.kill, destroys, sweeps leftovers and closes', async () => {
    const { fs, driver } = hostWith([100]);
    const cg = driver.create('sb-1', { memoryBytes: 1 << 30, cpuPeriodUs: 100_000, pidsMax: 32 });
    fs.addProcess(cg.primaryDir, 555);
    await expect(driver.destroy(cg)).rejects.toMatchObject({ code: 'EBUSY' });
    driver.kill(cg);
    expect(fs.writes).toContainEqual([`${cg.primaryDir}/cgroup.kill`, '1']);
    await driver.destroy(cg);
    expect(fs.exists(cg.primaryDir)).toBe(false);

    const left = driver.create('left-over', { memoryBytes: 1 << 30, cpuPeriodUs: 100_000, pidsMax: 32 });
    fs.addProcess(left.primaryDir, 777);
    expect(await driver.sweep()).toBe(1);
    expect(fs.exists(left.primaryDir)).toBe(false);
    await driver.close();
    expect(fs.exists(`${SELF}/fnbox-test`)).toBe(false);
  });

  it('names the missing controller when the parent does not delegate it', () => {
    const fs = new FakeCgroupFs().addV2Root('/sys/fs/cgroup', ['cpu', 'memory', 'pids']);
    fs.addExisting(SELF.replace('/session-1.scope', ''));
    fs.write('/sys/fs/cgroup/cgroup.subtree_control', '+memory');
    fs.write('/sys/fs/cgroup/user.slice/cgroup.subtree_control', '+memory');
    fs.addExisting(SELF);
    expect(() => new V2CgroupDriver({ mode: 'v2', unifiedSelf: SELF, unifiedRoot: '/sys/fs/cgroup', v1Self: new Map() }, 'x', fs)).toThrow(/has no cpu, pids controller delegated/);
  });
});
