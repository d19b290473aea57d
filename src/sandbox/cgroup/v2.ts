// Pure cgroup v2. Sandboxes are leaves under <our cgroup>/<parent>. The "no
// internal processes" rule forbids enabling controllers for children of a
// cgroup that has processes, so the gateway first moves the processes of its
// own cgroup into a leaf (as systemd's delegation and Docker-in-Docker do):
// they keep every limit of that cgroup, which now also covers the sandboxes.
import { basename, dirname, join } from 'node:path';
import { FnboxError } from '../../errors.js';
import { childDirs, ensureDir, followRecipe, killListed, killTree, removeDir, tryRead, writeIfPresent } from './common.js';
import type { CgroupHost } from './detect.js';
import { formatCpuMax, parseFlatKeyed, parsePids } from './files.js';
import { realCgroupFs, type CgroupFs } from './fs.js';
import type { CallMeter, CgroupDriver, CgroupEvents, CgroupLimits, CgroupRecipe, CgroupUsage, SandboxCgroup } from './types.js';

const CONTROLLERS = ['memory', 'cpu', 'pids'];
export const GATEWAY_LEAF = 'fnbox-gateway';

function limitWrites(dir: string, limits: CgroupLimits): Array<[string, string]> {
  return [
    [join(dir, 'memory.max'), String(limits.memoryBytes)],
    [join(dir, 'cpu.max'), formatCpuMax(limits.cpus === undefined ? undefined : limits.cpus * limits.cpuPeriodUs, limits.cpuPeriodUs)],
    [join(dir, 'pids.max'), String(limits.pidsMax)],
  ];
}

export class V2CgroupDriver implements CgroupDriver {
  readonly mode = 'v2' as const;
  readonly description: string;
  private readonly self: string;
  private readonly parent: string;
  /** Files a sandbox's cgroup may lack (swap accounting off, before 4.19): seen on the parent, which has the same ones. */
  private readonly optionalFiles: ReadonlySet<string>;

  constructor(host: CgroupHost, parentName: string, private readonly fs: CgroupFs = realCgroupFs) {
    if (!host.unifiedSelf) throw new FnboxError('HostUnsupported', 'cgroup v2 is not mounted');
    // Inside our own leaf already (an earlier start, or another gateway in the
    // same cgroup moved us): the delegated cgroup is the one above it, so the
    // sandboxes' parent stays where a restart will look for leftovers.
    let self = host.unifiedSelf;
    while (basename(self) === GATEWAY_LEAF) self = dirname(self);
    this.self = self;
    this.parent = join(this.self, parentName);
    this.delegateControllers(this.self === host.unifiedRoot);
    ensureDir(fs, this.parent);
    fs.write(join(this.parent, 'cgroup.subtree_control'), CONTROLLERS.map((c) => `+${c}`).join(' '));
    this.optionalFiles = new Set(['memory.swap.max', 'memory.oom.group'].filter((file) => fs.exists(join(this.parent, file))));
    this.description = `cgroup v2: sandboxes under ${this.parent}`;
  }

  /** Make our own cgroup able to hand memory, cpu and pids to its children. */
  private delegateControllers(isRoot: boolean): void {
    const subtree = join(this.self, 'cgroup.subtree_control');
    const enabled = this.fs.read(subtree).trim().split(/\s+/);
    const missing = CONTROLLERS.filter((c) => !enabled.includes(c));
    if (missing.length === 0) return;
    const available = this.fs.read(join(this.self, 'cgroup.controllers')).trim().split(/\s+/);
    const absent = missing.filter((c) => !available.includes(c));
    if (absent.length) throw new FnboxError('HostUnsupported', `cgroup v2: ${this.self} has no ${absent.join(', ')} controller delegated to it`);
    // The root cgroup is exempt from the no-internal-processes rule.
    if (!isRoot && this.fs.read(join(this.self, 'cgroup.procs')).trim()) {
      const leaf = join(this.self, GATEWAY_LEAF);
      ensureDir(this.fs, leaf);
      for (const pid of this.fs.read(join(this.self, 'cgroup.procs')).split('\n')) {
        if (!pid) continue;
        try {
          this.fs.write(join(leaf, 'cgroup.procs'), pid);
        } catch (error) {
          // Exited meanwhile, or a kernel thread: nothing to move.
          const code = (error as NodeJS.ErrnoException).code;
          if (code !== 'ESRCH' && code !== 'EINVAL') throw error;
        }
      }
    }
    this.fs.write(subtree, missing.map((c) => `+${c}`).join(' '));
  }

  plan(name: string, limits: CgroupLimits): { cgroup: SandboxCgroup; recipe: CgroupRecipe } {
    const dir = join(this.parent, name);
    const writes: Array<[string, string]> = [];
    if (this.optionalFiles.has('memory.swap.max')) writes.push([join(dir, 'memory.swap.max'), '0']);
    // An OOM kills the whole sandbox, not just its biggest process.
    if (this.optionalFiles.has('memory.oom.group')) writes.push([join(dir, 'memory.oom.group'), '1']);
    writes.push(...limitWrites(dir, limits));
    return { cgroup: { name, dirs: [dir], cloneInto: dir, joinedByInit: [], primaryDir: dir }, recipe: { mkdirs: [dir], writes } };
  }

  create(name: string, limits: CgroupLimits): SandboxCgroup {
    const { cgroup, recipe } = this.plan(name, limits);
    followRecipe(this.fs, name, recipe);
    return cgroup;
  }

  setLimits(cgroup: SandboxCgroup, limits: CgroupLimits): void {
    try {
      for (const [file, value] of limitWrites(cgroup.primaryDir, limits)) this.fs.write(file, value);
    } catch (error) {
      throw new FnboxError('SandboxError', `setting the limits of cgroup ${cgroup.name} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  usage(cgroup: SandboxCgroup): CgroupUsage {
    const dir = cgroup.primaryDir;
    const cpu = parseFlatKeyed(this.fs.read(join(dir, 'cpu.stat')));
    return {
      memoryCurrentBytes: Number(this.fs.read(join(dir, 'memory.current'))),
      memoryPeakBytes: Number(tryRead(this.fs, join(dir, 'memory.peak')) ?? 0),
      cpuUsageUs: cpu.get('usage_usec') ?? 0,
      nrThrottled: cpu.get('nr_throttled') ?? 0,
      throttledUs: cpu.get('throttled_usec') ?? 0,
      pidsCurrent: Number(tryRead(this.fs, join(dir, 'pids.current')) ?? 0),
    };
  }

  meter(cgroup: SandboxCgroup): CallMeter {
    const dir = cgroup.primaryDir;
    const cpu = this.fs.open(join(dir, 'cpu.stat'), 'r');
    // Since 6.12 a write to memory.peak resets the peak for that open file only.
    const peak = this.fs.open(join(dir, 'memory.peak'), 'rw');
    // A v2 cgroup.procs restarts its walk on every read from offset 0: one open file serves every call.
    const procs = this.fs.open(join(dir, 'cgroup.procs'), 'r');
    const cpuUs = (): number => parseFlatKeyed(cpu.read()).get('usage_usec') ?? 0;
    return {
      begin: () => {
        try {
          peak.write('reset');
        } catch {
          // Before 6.12 memory.peak is read-only: receipts show the lifetime peak.
        }
        return cpuUs();
      },
      end: () => ({ cpuUsageUs: cpuUs(), memoryPeakBytes: Number(peak.read()) }),
      processes: () => parsePids(procs.read()),
      close: () => {
        for (const file of [cpu, peak, procs]) file.close();
      },
    };
  }

  events(cgroup: SandboxCgroup): CgroupEvents {
    const memory = parseFlatKeyed(tryRead(this.fs, join(cgroup.primaryDir, 'memory.events')) ?? '');
    const pids = parseFlatKeyed(tryRead(this.fs, join(cgroup.primaryDir, 'pids.events')) ?? '');
    return { oomKills: memory.get('oom_kill') ?? 0, pidsMaxHits: pids.get('max') ?? 0 };
  }

  kill(cgroup: SandboxCgroup, initPid?: number): void {
    killTree(this.fs, cgroup.primaryDir, initPid, cgroup.primaryDir);
  }

  async destroy(cgroup: SandboxCgroup): Promise<void> {
    for (const dir of cgroup.dirs) await removeDir(this.fs, dir);
  }

  async sweep(): Promise<number> {
    const leftovers = childDirs(this.fs, this.parent);
    for (const dir of leftovers) if (!writeIfPresent(this.fs, join(dir, 'cgroup.kill'), '1')) killListed(this.fs, dir);
    for (const dir of leftovers) await removeDir(this.fs, dir);
    return leftovers.length;
  }

  async close(): Promise<void> {
    // A cgroup a monitor made after its boot was given up on (it was slow to
    // connect, then killed) would keep the parent: gone with the rest.
    await this.sweep();
    await removeDir(this.fs, this.parent, 10);
  }
}
