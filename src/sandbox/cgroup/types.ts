// The cgroup driver interface: one shape for pure v2, hybrid and v1, chosen
// once at start (crun's libcrun_cgroup_manager). The sandbox module only
// talks to this interface.

export type CgroupMode = 'v2' | 'hybrid' | 'v1';

export interface CgroupLimits {
  memoryBytes: number;
  /** Fraction of one core (0.5 = half a core), or undefined for no cap. */
  cpus?: number;
  cpuPeriodUs: number;
  pidsMax: number;
}

/** Where a sandbox's cgroup lives, and how the launcher joins it. */
export interface SandboxCgroup {
  readonly name: string;
  /** Every directory made for this sandbox, leaf first per hierarchy. */
  readonly dirs: readonly string[];
  /** The cgroup2 directory the launcher clones into (CLONE_INTO_CGROUP). */
  readonly cloneInto?: string;
  /** v1 directories the sandbox's init joins first thing after its release (join_cgroup1 in the launcher). */
  readonly joinedByInit: readonly string[];
  /** The directory shown to users as "the" cgroup (memory's). */
  readonly primaryDir: string;
}

/**
 * What making a sandbox's cgroup takes: these directories, then these
 * writes, in this order. The launcher's monitor follows it for a boot (the
 * gateway's thread never waits on the kernel's cgroup lock); `create` follows
 * it in-process, for cgroups made ahead.
 */
export interface CgroupRecipe {
  readonly mkdirs: readonly string[];
  readonly writes: ReadonlyArray<readonly [file: string, value: string]>;
}

export interface CgroupUsage {
  memoryCurrentBytes: number;
  memoryPeakBytes: number;
  cpuUsageUs: number;
  nrThrottled: number;
  throttledUs: number;
  pidsCurrent: number;
}

export interface CgroupEvents {
  /** Processes the kernel's OOM killer killed in this cgroup. */
  oomKills: number;
  /** Times a fork failed because pids.max was reached. */
  pidsMaxHits: number;
}

export interface CallMeter {
  /** Starts a new peak-memory window; returns the cpu time used so far. */
  begin(): number;
  /** Cpu time used so far and the memory peak since begin(). */
  end(): { cpuUsageUs: number; memoryPeakBytes: number };
  /** Host PIDs of every process in the cgroup. */
  processes(): number[];
  close(): void;
}

export interface CgroupDriver {
  readonly mode: CgroupMode;
  /** One line for logs and /healthz: which driver, where. */
  readonly description: string;
  /** Sandbox cgroup `name` with `limits`, and how to make it; nothing is made yet. */
  plan(name: string, limits: CgroupLimits): { cgroup: SandboxCgroup; recipe: CgroupRecipe };
  /** plan() and its recipe followed here; the cgroup exists on return. */
  create(name: string, limits: CgroupLimits): SandboxCgroup;
  /** Rewrites the limits of a cgroup no process has joined yet (one made ahead with `previous`). */
  setLimits(cgroup: SandboxCgroup, limits: CgroupLimits, previous: CgroupLimits): void;
  usage(cgroup: SandboxCgroup): CgroupUsage;
  /** Files held open for the per-call receipt (one pread each on the invoke path). */
  meter(cgroup: SandboxCgroup): CallMeter;
  events(cgroup: SandboxCgroup): CgroupEvents;
  /** Kills every process of the sandbox at once. */
  kill(cgroup: SandboxCgroup, initPid?: number): void;
  /** Removes the sandbox's directories; its processes must be gone. */
  destroy(cgroup: SandboxCgroup): Promise<void>;
  /** Removes leftovers of an earlier run with the same state dir; returns how many. */
  sweep(): Promise<number>;
  /** Removes the driver's own parent directories (gateway shutdown). */
  close(): Promise<void>;
}
