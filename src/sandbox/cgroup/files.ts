// Parsing the kernel's cgroup formats (Documentation/admin-guide/cgroup-v2.rst
// "Interface Files", and the v1 docs for memory, cpu, cpuacct, pids) and
// the /proc files that locate our own cgroups. Pure; unit-tested.

/** "key value" lines (cpu.stat, memory.events, memory.stat, pids.events). */
export function parseFlatKeyed(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^-?\d+$/.test(value)) values.set(key, Number(value));
  }
  return values;
}

/** cgroup.procs: one PID per line. */
export function parsePids(text: string): number[] {
  return text.split('\n').filter(Boolean).map(Number);
}

/** v2 cpu.max: "$MAX $PERIOD", MAX may be "max". */
export function parseCpuMax(text: string): { quotaUs: number | 'max'; periodUs: number } {
  const [quota, period] = text.trim().split(/\s+/);
  if (!quota || !period) throw new Error(`not a cpu.max value: ${JSON.stringify(text)}`);
  return { quotaUs: quota === 'max' ? 'max' : Number(quota), periodUs: Number(period) };
}

export function formatCpuMax(quotaUs: number | undefined, periodUs: number): string {
  return `${quotaUs === undefined ? 'max' : Math.round(quotaUs)} ${Math.round(periodUs)}`;
}

/** /proc/PID/cgroup: "hierarchy-id:controller,list:/path" per line. */
export interface ProcCgroupLine {
  hierarchyId: number;
  controllers: string[];
  path: string;
}

export function parseProcCgroup(text: string): ProcCgroupLine[] {
  const lines: ProcCgroupLine[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const list = line.slice(first + 1, second);
    lines.push({
      hierarchyId: Number(line.slice(0, first)),
      controllers: list ? list.split(',') : [],
      path: line.slice(second + 1),
    });
  }
  return lines;
}

/** The cgroup mounts of /proc/self/mountinfo. */
export interface CgroupMount {
  mountPoint: string;
  root: string;
  version: 1 | 2;
  controllers: string[];
}

const V1_CONTROLLERS = new Set([
  'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'blkio',
  'perf_event', 'net_prio', 'hugetlb', 'pids', 'rdma', 'misc',
]);

export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const fields = line.slice(0, dash).split(' ');
    const [fsType, , superOptions = ''] = line.slice(dash + 3).split(' ');
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    mounts.push({
      mountPoint: unescapeMountPath(fields[4] ?? ''),
      root: unescapeMountPath(fields[3] ?? '/'),
      version: fsType === 'cgroup2' ? 2 : 1,
      controllers: fsType === 'cgroup2' ? [] : superOptions.split(',').filter((option) => V1_CONTROLLERS.has(option)),
    });
  }
  return mounts;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
