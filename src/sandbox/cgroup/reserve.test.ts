// The reserve on the in-memory cgroupfs: which cgroups it makes, when, with
// which limits, and that nothing is left once it is closed.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { FakeCgroupFs } from '../../../test/support/fake-cgroupfs.js';
import { CgroupReserve } from './reserve.js';
import { V2CgroupDriver } from './v2.js';

const PARENT = '/cg/service/fnbox-r';

function reserveOf(size: number): { fs: FakeCgroupFs; reserve: CgroupReserve } {
  const fs = new FakeCgroupFs().addV2Root('/cg', ['cpu', 'memory', 'pids']);
  fs.write('/cg/cgroup.subtree_control', '+cpu +memory +pids');
  fs.addExisting('/cg/service');
  const driver = new V2CgroupDriver({ mode: 'v2', unifiedSelf: '/cg/service', unifiedRoot: '/cg', v1Self: new Map() }, 'fnbox-r', fs);
  return { fs, reserve: new CgroupReserve(driver, size) };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await nextTurn();
}

const small = { memoryBytes: 64 << 20, cpus: 0.5, cpuPeriodUs: 100_000, pidsMax: 16 };
const big = { memoryBytes: 512 << 20, cpus: 2, cpuPeriodUs: 100_000, pidsMax: 128 };

describe('CgroupReserve', () => {
  it('has nothing before the first boot says which limits to expect, then makes up to its size while quiet', async () => {
    const { fs, reserve } = reserveOf(2);
    reserve.refillWhen(() => true);
    await settle();
    expect(reserve.available).toBe(0);
    expect(reserve.take(small)).toBeUndefined();
    reserve.refillWhen(() => true);
    await settle();
    expect(reserve.available).toBe(2);
    expect(fs.listDirs(PARENT)).toHaveLength(2);
    for (const name of fs.listDirs(PARENT)) expect(fs.read(`${PARENT}/${name}/memory.max`).trim()).toBe(String(64 << 20));
  });

  it('makes nothing while a boot is under way', async () => {
    const { reserve } = reserveOf(2);
    reserve.take(small);
    reserve.refillWhen(() => false);
    await settle();
    expect(reserve.available).toBe(0);
  });

  it('hands out a cgroup named after its sandbox id, rewritten to the limits asked for', async () => {
    const { fs, reserve } = reserveOf(1);
    reserve.take(small);
    reserve.refillWhen(() => true);
    await settle();
    const taken = reserve.take(big)!;
    expect(taken.id).toMatch(/^sb-[0-9a-f]{12}$/);
    expect(taken.cgroup.name).toBe(taken.id);
    expect(fs.read(`${PARENT}/${taken.id}/memory.max`).trim()).toBe(String(512 << 20));
    expect(fs.read(`${PARENT}/${taken.id}/cpu.max`).trim()).toBe('200000 100000');
    expect(fs.read(`${PARENT}/${taken.id}/pids.max`).trim()).toBe('128');
    expect(reserve.available).toBe(0);
    // The next one is made for the limits seen last.
    reserve.refillWhen(() => true);
    await settle();
    const next = reserve.take(big)!;
    expect(fs.read(`${PARENT}/${next.id}/memory.max`).trim()).toBe(String(512 << 20));
  });

  it('removes what it holds on close and makes no more', async () => {
    const { fs, reserve } = reserveOf(3);
    reserve.take(small);
    reserve.refillWhen(() => true);
    await settle();
    expect(fs.listDirs(PARENT)).toHaveLength(3);
    reserve.refillWhen(() => true);
    await reserve.close();
    await settle();
    expect(fs.listDirs(PARENT)).toEqual([]);
    reserve.refillWhen(() => true);
    await settle();
    expect(fs.listDirs(PARENT)).toEqual([]);
  });
});
