import { describe, expect, it } from 'vitest';
import { detectCgroupHost } from './detect.js';

const HYBRID_MOUNTS = [
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');

describe('detectCgroupHost', () => {
  it('recognises this machine: v1 controllers beside an empty cgroup2 tree', () => {
    const host = detectCgroupHost('8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n', HYBRID_MOUNTS, () => 'hugetlb');
    expect(host.mode).toBe('hybrid');
    expect(host.v1Self.get('memory')).toBe('/sys/fs/cgroup/memory/process_api/abc');
    expect(host.v1Self.get('pids')).toBe('/sys/fs/cgroup/pids');
    expect(host.unifiedSelf).toBe('/sys/fs/cgroup/unified');
  });

  it('recognises pure v2 with delegated controllers', () => {
    const host = detectCgroupHost('0::/user.slice/session-1.scope\n', '29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate', () => 'cpuset cpu io memory pids\n');
    expect(host).toMatchObject({ mode: 'v2', unifiedSelf: '/sys/fs/cgroup/user.slice/session-1.scope', unifiedRoot: '/sys/fs/cgroup' });
  });

  it('refuses a v2 tree without memory and pids, saying what is missing', () => {
    expect(() => detectCgroupHost('0::/\n', '29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw', () => 'cpu io\n')).toThrow(/does not delegate the memory and pids controllers \(it has: cpu io\)/);
  });

  it('recognises pure v1 and a container view whose mount root is a subtree', () => {
    const mounts = '35 31 0:32 /docker/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n39 31 0:36 /docker/c1 /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n36 31 0:33 /docker/c1 /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct';
    const host = detectCgroupHost('5:memory:/docker/c1\n6:pids:/docker/c1/x\n3:cpu,cpuacct:/docker/c1\n', mounts);
    expect(host.mode).toBe('v1');
    expect(host.v1Self.get('memory')).toBe('/sys/fs/cgroup/memory');
    expect(host.v1Self.get('pids')).toBe('/sys/fs/cgroup/pids/x');
    expect(host.v1Self.get('cpuacct')).toBe('/sys/fs/cgroup/cpu,cpuacct');
  });

  it('says so when no cgroup filesystem is mounted', () => {
    expect(() => detectCgroupHost('0::/\n', '')).toThrow(/no cgroup filesystem/);
  });
});
