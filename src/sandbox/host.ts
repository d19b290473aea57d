// Everything sandboxes share on one host: the launcher, the cgroup driver,
// the uid ranges, and the run directory. Opening it sweeps what an earlier
// run with the same state dir left behind; closing it destroys every
// sandbox and removes fnbox's own cgroups.
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_LAUNCHER } from '../paths.js';
import { FnboxError } from '../errors.js';
import { InFlight } from '../in-flight.js';
import { cgroupTuningHints, detectCgroupHost, openCgroupDriver, type CgroupDriver, type CgroupLimits } from './cgroup/index.js';
import { CgroupReserve, newSandboxId } from './cgroup/reserve.js';
import { DEFAULT_ID_RANGES, IdRanges, type IdRangeOptions } from './ids.js';
import { Launcher } from './launcher.js';
import { Sandbox } from './sandbox.js';
import { buildSandboxSpec, type SandboxLimits } from './spec.js';
import { writePolicyFile } from '../seccomp/index.js';

export { DEFAULT_LAUNCHER, PROJECT_ROOT } from '../paths.js';

export const DEFAULT_LIMITS: SandboxLimits = {
  memoryBytes: 128 * 1024 * 1024,
  cpus: 1,
  pidsMax: 64,
  tmpBytes: 64 * 1024 * 1024,
  tmpInodes: 16_384,
  nofile: 1024,
};

export const CPU_PERIOD_US = 100_000;

/** Sandbox cgroups made ahead while nothing boots (src/sandbox/cgroup/reserve.ts). */
const CGROUP_RESERVE = 2;

export interface SandboxHostOptions {
  stateDir: string;
  launcherBinary?: string;
  idRanges?: IdRangeOptions;
  bootTimeoutMs?: number;
  /** Network namespaces the launcher keeps ready (0: each boot makes its own). */
  netnsPool?: number;
}

export interface BootRequest {
  id?: string;
  layers: string[];
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  hostname?: string;
  limits?: Partial<SandboxLimits>;
  channel?: boolean;
  captureLogs?: boolean;
  /** A compiled policy to apply instead of the default; `false` for none (launcher tests only). */
  seccompFile?: string | false;
}

export class SandboxHost {
  private readonly sandboxes = new Map<string, Sandbox>();
  private closing?: Promise<void>;
  /** close() waits for boots under way, or their cgroups would outlive it. */
  private readonly booting = new InFlight();
  private readonly cgroupReserve: CgroupReserve;

  private constructor(
    readonly stateDir: string,
    readonly cgroups: CgroupDriver,
    /** The directory name fnbox uses under its own cgroup in every hierarchy. */
    readonly cgroupParentName: string,
    readonly launcher: Launcher,
    private readonly ids: IdRanges,
    /** How many cgroups of an earlier run the start-up sweep removed. */
    readonly swept: number,
    /** The compiled default seccomp policy every sandbox gets. */
    readonly seccompFile: string,
    /** Host settings that would make boots faster (logged at start, shown by /healthz). */
    readonly tuningHints: string[],
  ) {
    this.cgroupReserve = new CgroupReserve(cgroups, CGROUP_RESERVE);
  }

  static async open(options: SandboxHostOptions): Promise<SandboxHost> {
    if (process.getuid?.() !== 0) {
      throw new FnboxError('HostUnsupported', 'fnbox must run as root: it creates namespaces, cgroups and mounts for its sandboxes');
    }
    const binary = options.launcherBinary ?? DEFAULT_LAUNCHER;
    if (!existsSync(binary)) throw new FnboxError('HostUnsupported', `the launcher ${binary} is missing; run \`npm run build\``);
    const stateDir = resolve(options.stateDir);
    // One cgroup parent per state dir: two gateways never sweep each other.
    const tag = createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
    const cgroupParentName = `fnbox-${tag}`;
    const cgroupHost = detectCgroupHost();
    const cgroups = openCgroupDriver(cgroupParentName, cgroupHost);
    const hints = cgroupTuningHints(cgroupHost);
    const swept = await cgroups.sweep();
    const runDir = join(stateDir, 'run');
    rmSync(runDir, { recursive: true, force: true });
    const launcher = await Launcher.start({ binary, runDir, bootTimeoutMs: options.bootTimeoutMs, netnsPool: options.netnsPool });
    const seccompFile = writePolicyFile(runDir);
    return new SandboxHost(stateDir, cgroups, cgroupParentName, launcher, new IdRanges(options.idRanges ?? DEFAULT_ID_RANGES), swept, seccompFile, hints);
  }

  live(): Sandbox[] {
    return [...this.sandboxes.values()];
  }

  get(id: string): Sandbox | undefined {
    return this.sandboxes.get(id);
  }

  boot(request: BootRequest): Promise<Sandbox> {
    if (this.closing) return Promise.reject(new FnboxError('Unavailable', 'the sandbox host is shutting down'));
    const boot = this.booting.track(this.bootOnce(request));
    // Checked on a later turn, when this boot no longer counts as under way.
    const refill = (): void => this.cgroupReserve.refillWhen(() => this.booting.count === 0 && !this.closing);
    void boot.then(refill, refill);
    return boot;
  }

  /** Cgroups made ahead for the next boots (diagnostics and tests). */
  get reservedCgroups(): number {
    return this.cgroupReserve.available;
  }

  /** Their directories: empty cgroups, no sandbox's yet. */
  reservedCgroupDirs(): string[] {
    return this.cgroupReserve.dirs();
  }

  private async bootOnce(request: BootRequest): Promise<Sandbox> {
    if (request.id !== undefined && this.sandboxes.has(request.id)) throw new FnboxError('SandboxError', `sandbox ${request.id} already exists`);
    const limits = { ...DEFAULT_LIMITS, ...request.limits };
    const cgroupLimits: CgroupLimits = { memoryBytes: limits.memoryBytes, cpus: limits.cpus, cpuPeriodUs: CPU_PERIOD_US, pidsMax: limits.pidsMax };
    const hostIdBase = this.ids.acquire();
    let id: string;
    let cgroup;
    try {
      const reserved = request.id === undefined ? this.cgroupReserve.take(cgroupLimits) : undefined;
      id = reserved?.id ?? request.id ?? newSandboxId();
      cgroup = reserved?.cgroup ?? this.cgroups.create(id, cgroupLimits);
    } catch (error) {
      this.ids.release(hostIdBase);
      throw error;
    }
    try {
      const spec = buildSandboxSpec({
        id,
        layers: request.layers,
        argv: request.argv,
        env: request.env,
        cwd: request.cwd,
        hostname: request.hostname,
        limits,
        hostIdBase,
        rootMountpoint: this.launcher.rootMountpoint,
        scratchDir: this.launcher.scratchDir,
        channel: request.channel,
        captureLogs: request.captureLogs,
        seccompFile: request.seccompFile === false ? undefined : (request.seccompFile ?? this.seccompFile),
        cgroup,
      });
      const launched = await this.launcher.boot(spec);
      const sandbox = new Sandbox(spec, cgroup, hostIdBase, launched, {
        cgroups: this.cgroups,
        ids: this.ids,
        onGone: (gone) => this.sandboxes.delete(gone.id),
      });
      this.sandboxes.set(id, sandbox);
      return sandbox;
    } catch (error) {
      this.cgroups.kill(cgroup);
      await this.cgroups.destroy(cgroup).catch(() => {});
      this.ids.release(hostIdBase);
      throw error;
    }
  }

  /** Destroys every sandbox, stops the launcher, removes fnbox's cgroups. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // A boot that answers during the close registers its sandbox after
      // we listed them, and one that fails removes its cgroup on its own
      // time: either way the parent cgroups could not go. Let them finish.
      await this.booting.settled();
      await Promise.all(this.live().map((sandbox) => sandbox.destroy()));
      await this.launcher.close();
      await this.cgroupReserve.close();
      await this.cgroups.close();
      this.ids.releaseAll();
      rmSync(join(this.stateDir, 'run'), { recursive: true, force: true });
    })();
    return this.closing;
  }
}
