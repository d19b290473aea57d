import { describe, expect, it } from 'vitest';
import { formatCpuMax, parseCgroupMounts, parseCpuMax, parseFlatKeyed, parseProcCgroup } from './files.js';

describe('cgroup file formats', () => {
  it('parses flat-keyed files such as v2 cpu.stat (cgroup-v2.rst)', () => {
    const stat = parseFlatKeyed('usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 10\nnr_throttled 3\nthrottled_usec 5678\n');
    expect(stat.get('usage_usec')).toBe(1234);
    expect(stat.get('nr_throttled')).toBe(3);
    expect(stat.get('throttled_usec')).toBe(5678);
  });

  it('parses v1 memory.oom_control and ignores non-numeric lines', () => {
    const oom = parseFlatKeyed('oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    expect(oom.get('oom_kill')).toBe(2);
    expect(parseFlatKeyed('garbage\nkey notanumber\n').size).toBe(0);
  });

  it('reads and writes cpu.max ("$MAX $PERIOD")', () => {
    expect(parseCpuMax('max 100000\n')).toEqual({ quotaUs: 'max', periodUs: 100000 });
    expect(parseCpuMax('50000 100000')).toEqual({ quotaUs: 50000, periodUs: 100000 });
    expect(formatCpuMax(undefined, 100000)).toBe('max 100000');
    expect(formatCpuMax(25000.4, 100000)).toBe('25000 100000');
  });

  it('parses /proc/self/cgroup on hybrid and pure v2 hosts', () => {
    expect(parseProcCgroup('4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/user.slice\n')).toEqual([
      { hierarchyId: 4, controllers: ['memory'], path: '/process_api/x' },
      { hierarchyId: 2, controllers: ['cpu', 'cpuacct'], path: '/' },
      { hierarchyId: 0, controllers: [], path: '/user.slice' },
    ]);
  });

  it('finds cgroup mounts and their controllers in mountinfo', () => {
    const mountinfo = [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
      '36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
      '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
      '41 31 0:38 /docker/abc /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate,favordynmods',
    ].join('\n');
    expect(parseCgroupMounts(mountinfo)).toEqual([
      { mountPoint: '/sys/fs/cgroup/memory', root: '/', version: 1, controllers: ['memory'] },
      { mountPoint: '/sys/fs/cgroup/cpu,cpuacct', root: '/', version: 1, controllers: ['cpu', 'cpuacct'] },
      { mountPoint: '/sys/fs/cgroup/systemd', root: '/', version: 1, controllers: [] },
      { mountPoint: '/sys/fs/cgroup/unified', root: '/docker/abc', version: 2, controllers: [] },
    ]);
  });
});
