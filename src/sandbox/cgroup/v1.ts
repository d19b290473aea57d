// cgroup v1 controllers (memory, cpu, cpuacct, pids), with or without a
// cgroup2 mount beside them. With one (hybrid), the v2 tree gives us
// CLONE_INTO_CGROUP for membership and cgroup.kill for an atomic kill; the
// v1 hierarchies are joined by the launcher before it releases the child.
// Without one (pure v1), the kill goes to the sandbox's PID 1: the kernel
// then kills the whole PID namespace at once (zap_pid_ns_processes).
import { join } from 'node:path';
import { FnboxError } from '../../errors.js';
import { childDirs, ensureDir, followRecipe, killListed, killTree, removeDir, tryRead, writeIfPresent } from './common.js';
import type { CgroupHost } from './detect.js';
import { parseFlatKeyed, parsePids } from './files.js';
import { realCgroupFs, type CgroupFs } from './fs.js';
import type { CallMeter, CgroupDriver, CgroupEvents, CgroupLimits, CgroupRecipe, CgroupUsage, SandboxCgroup } from './types.js';

const CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids'] as const;
type Controller = (typeof CONTROLLERS)[number];

interface V1Sandbox extends SandboxCgroup {
  readonly byController: ReadonlyMap<Controller, string>;
}

export class V1CgroupDriver implements CgroupDriver {
  readonly mode: 'hybrid' | 'v1';
  readonly description: string;
  private readonly parents = new Map<Controller, string>();
  private readonly unifiedParent?: string;
  private readonly hasMemsw: boolean;
  private readonly hasSwappiness: boolean;

  constructor(host: CgroupHost, parentName: string, private readonly fs: CgroupFs = realCgroupFs) {
    this.mode = host.unifiedSelf ? 'hybrid' : 'v1';
    for (const controller of CONTROLLERS) {
      const self = host.v1Self.get(controller);
      if (self) this.parents.set(controller, join(self, parentName));
    }
    for (const required of ['memory', 'cpu', 'pids'] as const) {
      if (!this.parents.has(required)) throw new FnboxError('HostUnsupported', `cgroup v1: the ${required} controller is not mounted`);
    }
    // Co-mounted controllers (cpu,cpuacct) share one directory: make it once.
    for (const dir of new Set(this.parents.values())) ensureDir(fs, dir);
    if (host.unifiedSelf) {
      this.unifiedParent = join(host.unifiedSelf, parentName);
      ensureDir(fs, this.unifiedParent);
    }
    this.hasMemsw = fs.exists(join(this.parents.get('memory')!, 'memory.memsw.limit_in_bytes'));
    this.hasSwappiness = fs.exists(join(this.parents.get('memory')!, 'memory.swappiness'));
    this.description = `cgroup ${this.mode}: v1 ${[...this.parents.keys()].join(',')} under ${this.parents.get('memory')}` +
      (this.unifiedParent ? `; v2 ${this.unifiedParent} for clone-into and kill` : '; kill via the sandbox PID 1');
  }

  private dir(cgroup: SandboxCgroup, controller: Controller): string | undefined {
    return (cgroup as V1Sandbox).byController.get(controller);
  }

  plan(name: string, limits: CgroupLimits): { cgroup: V1Sandbox; recipe: CgroupRecipe } {
    const byController = new Map<Controller, string>();
    for (const [controller, parent] of this.parents) byController.set(controller, join(parent, name));
    // Co-mounted controllers (cpu,cpuacct) share one directory: made once.
    const mkdirs = [...new Set(byController.values())];
    const memory = byController.get('memory')!;
    const writes: Array<[string, string]> = [];
    if (!this.hasMemsw && this.hasSwappiness) writes.push([join(memory, 'memory.swappiness'), '0']);
    // A new cgroup's memsw limit is unlimited: the memory limit goes first.
    writes.push(...this.limitWrites(byController, limits, false));
    const joinedByInit = [...mkdirs];
    const cloneInto = this.unifiedParent ? join(this.unifiedParent, name) : undefined;
    if (cloneInto) mkdirs.push(cloneInto);
    return { cgroup: { name, dirs: mkdirs, cloneInto, joinedByInit, primaryDir: memory, byController }, recipe: { mkdirs, writes } };
  }

  create(name: string, limits: CgroupLimits): V1Sandbox {
    const { cgroup, recipe } = this.plan(name, limits);
    followRecipe(this.fs, name, recipe);
    return cgroup;
  }

  setLimits(cgroup: SandboxCgroup, limits: CgroupLimits, previous: CgroupLimits): void {
    try {
      const writes = this.limitWrites((cgroup as V1Sandbox).byController, limits, limits.memoryBytes > previous.memoryBytes);
      for (const [file, value] of writes) this.fs.write(file, value);
    } catch (error) {
      throw new FnboxError('SandboxError', `setting the limits of cgroup ${cgroup.name} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * The kernel keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes at
   * every write (EINVAL otherwise): raising both, memsw goes first.
   */
  private limitWrites(byController: ReadonlyMap<Controller, string>, limits: CgroupLimits, memswFirst: boolean): Array<[string, string]> {
    const memory = byController.get('memory')!;
    const memoryLimit: [string, string] = [join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes)];
    // memsw = memory + swap: equal to the memory limit means no swap at all.
    const memswLimit: Array<[string, string]> = this.hasMemsw ? [[join(memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)]] : [];
    const cpu = byController.get('cpu')!;
    return [
      ...(memswFirst ? [...memswLimit, memoryLimit] : [memoryLimit, ...memswLimit]),
      [join(cpu, 'cpu.cfs_period_us'), String(limits.cpuPeriodUs)],
      [join(cpu, 'cpu.cfs_quota_us'), limits.cpus === undefined ? '-1' : String(Math.round(limits.cpus * limits.cpuPeriodUs))],
      [join(byController.get('pids')!, 'pids.max'), String(limits.pidsMax)],
    ];
  }

  usage(cgroup: SandboxCgroup): CgroupUsage {
    const memory = this.dir(cgroup, 'memory')!;
    const cpuStat = parseFlatKeyed(tryRead(this.fs, join(this.dir(cgroup, 'cpu')!, 'cpu.stat')) ?? '');
    const cpuacct = this.dir(cgroup, 'cpuacct');
    return {
      memoryCurrentBytes: Number(this.fs.read(join(memory, 'memory.usage_in_bytes'))),
      memoryPeakBytes: Number(this.fs.read(join(memory, 'memory.max_usage_in_bytes'))),
      cpuUsageUs: cpuacct ? Math.round(Number(this.fs.read(join(cpuacct, 'cpuacct.usage'))) / 1000) : 0,
      nrThrottled: cpuStat.get('nr_throttled') ?? 0,
      throttledUs: Math.round((cpuStat.get('throttled_time') ?? 0) / 1000),
      pidsCurrent: Number(tryRead(this.fs, join(this.dir(cgroup, 'pids')!, 'pids.current')) ?? 0),
    };
  }

  meter(cgroup: SandboxCgroup): CallMeter {
    const memory = this.dir(cgroup, 'memory')!;
    const cpuacct = this.dir(cgroup, 'cpuacct');
    const cpu = cpuacct ? this.fs.open(join(cpuacct, 'cpuacct.usage'), 'r') : undefined;
    // Writing to max_usage_in_bytes resets it to the current usage.
    const peak = this.fs.open(join(memory, 'memory.max_usage_in_bytes'), 'rw');
    // v1 caches a pid list per open file, so its cgroup.procs is opened afresh each time;
    // the unified (v2) directory of a hybrid host restarts its walk on each read, so it stays open.
    const procs = cgroup.cloneInto ? this.fs.open(join(cgroup.cloneInto, 'cgroup.procs'), 'r') : undefined;
    const cpuUs = (): number => (cpu ? Math.round(Number(cpu.read()) / 1000) : 0);
    return {
      begin: () => {
        peak.write('0');
        return cpuUs();
      },
      end: () => ({ cpuUsageUs: cpuUs(), memoryPeakBytes: Number(peak.read()) }),
      processes: () => parsePids(procs ? procs.read() : this.fs.read(join(memory, 'cgroup.procs'))),
      close: () => {
        for (const file of [cpu, peak, procs]) file?.close();
      },
    };
  }

  events(cgroup: SandboxCgroup): CgroupEvents {
    const oom = parseFlatKeyed(tryRead(this.fs, join(this.dir(cgroup, 'memory')!, 'memory.oom_control')) ?? '');
    const pids = parseFlatKeyed(tryRead(this.fs, join(this.dir(cgroup, 'pids')!, 'pids.events')) ?? '');
    return { oomKills: oom.get('oom_kill') ?? 0, pidsMaxHits: pids.get('max') ?? 0 };
  }

  kill(cgroup: SandboxCgroup, initPid?: number): void {
    killTree(this.fs, cgroup.cloneInto, initPid, cgroup.primaryDir);
  }

  async destroy(cgroup: SandboxCgroup): Promise<void> {
    for (const dir of cgroup.dirs) await removeDir(this.fs, dir);
  }

  private allParents(): string[] {
    return [...new Set([...this.parents.values(), ...(this.unifiedParent ? [this.unifiedParent] : [])])];
  }

  async sweep(): Promise<number> {
    const names = new Set<string>();
    for (const parent of this.allParents()) {
      for (const dir of childDirs(this.fs, parent)) {
        names.add(dir.slice(parent.length + 1));
        if (!writeIfPresent(this.fs, join(dir, 'cgroup.kill'), '1')) killListed(this.fs, dir);
      }
    }
    for (const parent of this.allParents()) for (const dir of childDirs(this.fs, parent)) await removeDir(this.fs, dir);
    return names.size;
  }

  async close(): Promise<void> {
    // A cgroup a monitor made after its boot was given up on (it was slow to
    // connect, then killed) would keep the parents: gone with the rest.
    await this.sweep();
    for (const dir of this.allParents()) await removeDir(this.fs, dir, 10);
  }
}
