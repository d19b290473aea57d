// One contract, every driver (crun's cgroup managers share one): the real
// driver of this host, and the others on an in-memory cgroupfs that follows
// the kernel's documented rules.
import { describe, expect, it } from 'vitest';
import { openCgroupDriver, type CgroupDriver, type CgroupFs, type SandboxCgroup } from '../../src/sandbox/cgroup/index.js';
import { realCgroupFs } from '../../src/sandbox/cgroup/fs.js';
import { FakeCgroupFs } from '../support/fake-cgroupfs.js';

interface Case {
  name: string;
  open: () => { driver: CgroupDriver; fs: CgroupFs };
}

const cases: Case[] = [
  {
    name: 'this host (real kernel)',
    open: () => ({ driver: openCgroupDriver(`fnbox-contract-${process.pid}`), fs: realCgroupFs }),
  },
  {
    name: 'pure v2 (fake, cgroup-v2.rst)',
    open: () => {
      const fs = new FakeCgroupFs().addV2Root('/cg', ['cpu', 'memory', 'pids', 'io']);
      fs.write('/cg/cgroup.subtree_control', '+cpu +memory +pids');
      fs.addExisting('/cg/service');
      fs.addProcess('/cg/service', 42);
      const driver = openCgroupDriver('fnbox-c', { mode: 'v2', unifiedSelf: '/cg/service', unifiedRoot: '/cg', v1Self: new Map() }, fs);
      return { driver, fs };
    },
  },
  {
    name: 'hybrid (fake, v1 controllers + empty cgroup2)',
    open: () => {
      const fs = new FakeCgroupFs().addV1Root('/cg/memory', ['memory']).addV1Root('/cg/cpu,cpuacct', ['cpu', 'cpuacct']).addV1Root('/cg/pids', ['pids']).addV2Root('/cg/unified', []);
      const v1Self = new Map([['memory', '/cg/memory'], ['cpu', '/cg/cpu,cpuacct'], ['cpuacct', '/cg/cpu,cpuacct'], ['pids', '/cg/pids']]);
      return { driver: openCgroupDriver('fnbox-c', { mode: 'hybrid', unifiedSelf: '/cg/unified', unifiedRoot: '/cg/unified', v1Self }, fs), fs };
    },
  },
  {
    name: 'pure v1 (fake)',
    open: () => {
      const fs = new FakeCgroupFs().addV1Root('/cg/memory', ['memory']).addV1Root('/cg/cpu', ['cpu']).addV1Root('/cg/cpuacct', ['cpuacct']).addV1Root('/cg/pids', ['pids']);
      const v1Self = new Map([['memory', '/cg/memory'], ['cpu', '/cg/cpu'], ['cpuacct', '/cg/cpuacct'], ['pids', '/cg/pids']]);
      return { driver: openCgroupDriver('fnbox-c', { mode: 'v1', v1Self }, fs), fs };
    },
  },
];

/** The memory and pids limits as the driver's own files hold them. */
function heldLimits(driver: CgroupDriver, fs: CgroupFs, cg: SandboxCgroup): { memory: number[]; pids: number } {
  const inDir = (name: string): string => `${cg.dirs.find((dir) => fs.exists(`${dir}/${name}`))}/${name}`;
  const memoryFiles = driver.mode === 'v2' ? ['memory.max'] : ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'];
  return {
    memory: memoryFiles.filter((name) => cg.dirs.some((dir) => fs.exists(`${dir}/${name}`))).map((name) => Number(fs.read(inDir(name)))),
    pids: Number(fs.read(inDir('pids.max'))),
  };
}

describe.each(cases)('cgroup driver contract: $name', ({ open }) => {
  it('rewrites the limits of a cgroup made ahead, up and down (v1: memory never above memory+swap)', async () => {
    const { driver, fs } = open();
    const base = { cpuPeriodUs: 100_000, cpus: 0.5 };
    const cg = driver.create('sb-ahead', { ...base, memoryBytes: 64 << 20, pidsMax: 16 });
    try {
      driver.setLimits(cg, { ...base, memoryBytes: 256 << 20, pidsMax: 64 }, { ...base, memoryBytes: 64 << 20, pidsMax: 16 });
      let held = heldLimits(driver, fs, cg);
      expect(held.memory.length).toBeGreaterThan(0);
      for (const value of held.memory) expect(value).toBe(256 << 20);
      expect(held.pids).toBe(64);
      driver.setLimits(cg, { ...base, memoryBytes: 32 << 20, pidsMax: 8 }, { ...base, memoryBytes: 256 << 20, pidsMax: 64 });
      held = heldLimits(driver, fs, cg);
      for (const value of held.memory) expect(value).toBe(32 << 20);
      expect(held.pids).toBe(8);
    } finally {
      await driver.destroy(cg);
      await driver.close();
    }
  });

  it('plans a cgroup without making it; its recipe, followed in order, makes what create() makes', async () => {
    const { driver, fs } = open();
    const limits = { cpuPeriodUs: 100_000, cpus: 0.5, memoryBytes: 96 << 20, pidsMax: 24 };
    const { cgroup: planned, recipe } = driver.plan('sb-planned', limits);
    try {
      expect(planned.dirs.filter((dir) => fs.exists(dir))).toEqual([]);
      expect(recipe.mkdirs).toEqual(planned.dirs);
      // Every write goes into a directory the recipe makes first.
      for (const [file] of recipe.writes) expect(recipe.mkdirs.some((dir) => file.startsWith(`${dir}/`)), file).toBe(true);
      // As the launcher does it (make_cgroups): every mkdir, then every write.
      for (const dir of recipe.mkdirs) fs.mkdir(dir);
      for (const [file, value] of recipe.writes) fs.write(file, value);
      const created = driver.create('sb-created', limits);
      try {
        const rename = (path: string): string => path.replace('sb-planned', 'sb-created');
        expect(planned.dirs.map(rename)).toEqual(created.dirs);
        expect(planned.joinedByInit.map(rename)).toEqual(created.joinedByInit);
        expect(planned.cloneInto && rename(planned.cloneInto)).toEqual(created.cloneInto);
        expect(heldLimits(driver, fs, planned)).toEqual(heldLimits(driver, fs, created));
        expect(heldLimits(driver, fs, planned).pids).toBe(24);
      } finally {
        await driver.destroy(created);
      }
    } finally {
      await driver.destroy(planned);
      await driver.close();
    }
  });

  it('closing removes a sandbox cgroup left behind, and then its own parents', async () => {
    const { driver, fs } = open();
    const { cgroup, recipe } = driver.plan('sb-left', { cpuPeriodUs: 100_000, cpus: 1, memoryBytes: 64 << 20, pidsMax: 16 });
    // Made by a monitor the gateway had given up on: the driver never heard of it.
    for (const dir of recipe.mkdirs) fs.mkdir(dir);
    await driver.close();
    for (const dir of cgroup.dirs) expect(fs.exists(dir), dir).toBe(false);
  });

  it('creates a sandbox cgroup under its own parent, reports usage, and removes everything', async () => {
    const { driver, fs } = open();
    try {
      const cg = driver.create('sb-contract', { memoryBytes: 32 << 20, cpus: 0.25, cpuPeriodUs: 100_000, pidsMax: 16 });
      expect(cg.dirs.length).toBeGreaterThan(0);
      for (const dir of cg.dirs) expect(fs.exists(dir), dir).toBe(true);
      // Sandboxes live below our own cgroup, never at a hierarchy root.
      for (const dir of cg.dirs) expect(dir.split('/').filter(Boolean).length).toBeGreaterThanOrEqual(4);
      expect(cg.cloneInto !== undefined || cg.joinedByInit.length > 0).toBe(true);
      const usage = driver.usage(cg);
      expect(usage.memoryCurrentBytes).toBeGreaterThanOrEqual(0);
      expect(usage.pidsCurrent).toBe(0);
      expect(driver.events(cg)).toEqual({ oomKills: 0, pidsMaxHits: 0 });
      const meter = driver.meter(cg);
      expect(meter.begin()).toBeGreaterThanOrEqual(0);
      expect(meter.end().memoryPeakBytes).toBeGreaterThanOrEqual(0);
      expect(meter.processes()).toEqual([]);
      meter.close();
      driver.kill(cg);
      await driver.destroy(cg);
      for (const dir of cg.dirs) expect(fs.exists(dir), dir).toBe(false);
      const leftover = driver.create('sb-leftover', { memoryBytes: 32 << 20, cpuPeriodUs: 100_000, pidsMax: 16 });
      expect(await driver.sweep()).toBe(1);
      for (const dir of leftover.dirs) expect(fs.exists(dir)).toBe(false);
    } finally {
      await driver.close();
    }
  });
});
