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
import { detectCgroupHost, openCgroupDriver, type CgroupDriver, type CgroupLimits, type CgroupRecipe, type SandboxCgroup } from './cgroup/index.js';
import { CgroupReserve, newSandboxId, sameLimits } from './cgroup/reserve.js';
import { DEFAULT_ID_RANGES, IdRanges, type IdRangeOptions } from './ids.js';
import { Launcher, type LaunchedSandbox } from './launcher.js';
import { ParkedReserve, type ParkedBoot } from './parked.js';
import { awaitMonitorGone, Sandbox } from './sandbox.js';
import { buildSandboxSpec, ID_RANGE, parkedShape, type SandboxLimits, type SandboxSpec } from './spec.js';
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
  /**
   * Sandboxes kept booted ahead, but for their program, in the shape of the
   * latest boot (src/sandbox/parked.ts); 0: every boot starts from nothing.
   */
  parkAhead?: number;
}

export interface ParkedSandboxInfo {
  id: string;
  monitorPid: number;
  initPid: number;
  hostIdBase: number;
  cgroupDirs: string[];
}

/** The default parkAhead: one boot in the latest boot's shape, paid ahead. */
export const PARK_AHEAD = 1;

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
  private readonly parkedReserve: ParkedReserve;
  /** The latest boot a parked sandbox could serve, and its shape: the next parking's model. */
  private latest?: { request: BootRequest; shape: string };

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
    private readonly parkAhead: number,
  ) {
    this.cgroupReserve = new CgroupReserve(cgroups, CGROUP_RESERVE);
    this.parkedReserve = new ParkedReserve(parkAhead, (boot) => this.busyWith(this.releaseParked(boot)));
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
    const swept = await cgroups.sweep();
    const runDir = join(stateDir, 'run');
    rmSync(runDir, { recursive: true, force: true });
    const launcher = await Launcher.start({ binary, runDir, bootTimeoutMs: options.bootTimeoutMs, netnsPool: options.netnsPool });
    const seccompFile = writePolicyFile(runDir);
    const ids = new IdRanges(options.idRanges ?? DEFAULT_ID_RANGES);
    return new SandboxHost(stateDir, cgroups, cgroupParentName, launcher, ids, swept, seccompFile, options.parkAhead ?? PARK_AHEAD);
  }

  live(): Sandbox[] {
    return [...this.sandboxes.values()];
  }

  get(id: string): Sandbox | undefined {
    return this.sandboxes.get(id);
  }

  boot(request: BootRequest): Promise<Sandbox> {
    if (this.closing) return Promise.reject(new FnboxError('Unavailable', 'the sandbox host is shutting down'));
    // A sandbox parked for the next boot is modelled on the latest one it could serve.
    const shape = request.id === undefined && this.parkAhead > 0 ? this.shapeOf(request) : undefined;
    if (shape !== undefined) this.latest = { request, shape };
    return this.busyWith(this.bootOnce(request, shape));
  }

  /**
   * Tracks work the host is busy with (boots, parkings, let-gos: close()
   * waits for them, refills wait until none is under way) and refills what
   * is made ahead once it is done.
   */
  private busyWith<T>(work: Promise<T>): Promise<T> {
    const tracked = this.booting.track(work);
    void tracked.then(() => this.refill(), () => this.refill());
    return tracked;
  }

  /** Makes ahead what the next boot likely needs, once nothing is under way (checked on a later turn). */
  private refill(): void {
    const quiet = (): boolean => this.booting.count === 0 && !this.closing;
    this.cgroupReserve.refillWhen(quiet);
    const latest = this.latest;
    if (!latest) return;
    this.parkedReserve.refillWhen(quiet, latest.shape, () =>
      this.busyWith(
        this.park(latest.request).catch((error: unknown) => {
          // Not again until the next boot (its layer may be gone): a retry would fail the same way, at once, forever.
          if (this.latest === latest) this.latest = undefined;
          throw error;
        }),
      ),
    );
  }

  /**
   * Resolves once nothing is booting, parking or being let go, and no
   * refill of what is made ahead is scheduled: what the host holds then
   * stays as it is until the next boot (tests compare snapshots).
   */
  async idle(): Promise<void> {
    for (;;) {
      await this.booting.settled();
      // Refills are scheduled for a later turn of the event loop.
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (this.booting.count === 0 && !this.cgroupReserve.refilling && !this.parkedReserve.refilling) return;
    }
  }

  /** Sandboxes parked now, booted ahead of their program: what they hold (diagnostics and tests). */
  parked(): ParkedSandboxInfo[] {
    return this.parkedReserve.list().map((boot) => ({
      id: boot.spec.id,
      monitorPid: boot.parked.monitorPid,
      initPid: boot.parked.initPid,
      hostIdBase: boot.hostIdBase,
      cgroupDirs: [...boot.cgroup.dirs],
    }));
  }

  /** Cgroups made ahead for the next boots (diagnostics and tests). */
  get reservedCgroups(): number {
    return this.cgroupReserve.available;
  }

  /** Their directories: empty cgroups, no sandbox's yet. */
  reservedCgroupDirs(): string[] {
    return this.cgroupReserve.dirs();
  }

  /** `shape`: the request's parkedShape, when a parked sandbox may serve it. */
  private async bootOnce(request: BootRequest, shape?: string): Promise<Sandbox> {
    if (request.id !== undefined && this.sandboxes.has(request.id)) throw new FnboxError('SandboxError', `sandbox ${request.id} already exists`);
    const mayPark = shape !== undefined && (this.parkedReserve.available > 0 || this.parkedReserve.refilling);
    const parked = mayPark ? await this.parkedReserve.take(shape) : undefined;
    if (parked) {
      try {
        return await this.startParked(parked, request);
      } catch {
        // Its sandbox is gone (killed while parked, say): boot one the usual way.
      }
    }
    return this.withResources(request, async ({ spec, cgroup, hostIdBase }) => this.register(spec, cgroup, hostIdBase, await this.launcher.boot(spec)));
  }

  /**
   * Runs `use` with the spec of a sandbox for `request`, on a uid range and a
   * cgroup of its own, and gives both back if it fails. The cgroup comes from
   * the reserve unless the sandbox is named by the caller; otherwise the spec
   * carries its recipe and the launcher makes it, so that the gateway's
   * thread does not wait on the kernel's cgroup lock while other boots hold it.
   */
  private async withResources<T>(request: BootRequest, use: (made: { spec: SandboxSpec; cgroup: SandboxCgroup; cgroupLimits: CgroupLimits; hostIdBase: number }) => Promise<T>): Promise<T> {
    const cgroupLimits = this.cgroupLimitsOf(request);
    const hostIdBase = this.ids.acquire();
    let id: string;
    let cgroup: SandboxCgroup;
    let makeCgroup: CgroupRecipe | undefined;
    try {
      const reserved = request.id === undefined ? this.cgroupReserve.take(cgroupLimits) : undefined;
      id = reserved?.id ?? request.id ?? newSandboxId();
      if (reserved) cgroup = reserved.cgroup;
      else ({ cgroup, recipe: makeCgroup } = this.cgroups.plan(id, cgroupLimits));
    } catch (error) {
      this.ids.release(hostIdBase);
      throw error;
    }
    try {
      return await use({ spec: this.specFor(request, id, hostIdBase, cgroup, makeCgroup), cgroup, cgroupLimits, hostIdBase });
    } catch (error) {
      this.cgroups.kill(cgroup);
      await this.cgroups.destroy(cgroup).catch(() => {});
      this.ids.release(hostIdBase);
      throw error;
    }
  }

  private register(spec: SandboxSpec, cgroup: SandboxCgroup, hostIdBase: number, launched: LaunchedSandbox): Sandbox {
    const sandbox = new Sandbox(spec, cgroup, hostIdBase, launched, {
      cgroups: this.cgroups,
      ids: this.ids,
      onGone: (gone) => this.sandboxes.delete(gone.id),
    });
    this.sandboxes.set(spec.id, sandbox);
    return sandbox;
  }

  private specFor(request: BootRequest, id: string, hostIdBase: number, cgroup?: SandboxCgroup, makeCgroup?: CgroupRecipe): SandboxSpec {
    return buildSandboxSpec({
      id,
      layers: request.layers,
      argv: request.argv,
      env: request.env,
      cwd: request.cwd,
      hostname: request.hostname,
      limits: { ...DEFAULT_LIMITS, ...request.limits },
      hostIdBase,
      rootMountpoint: this.launcher.rootMountpoint,
      scratchDir: this.launcher.scratchDir,
      channel: request.channel,
      captureLogs: request.captureLogs,
      seccompFile: request.seccompFile === false ? undefined : (request.seccompFile ?? this.seccompFile),
      cgroup,
      makeCgroup,
    });
  }

  /**
   * What a parked sandbox must have been built from to run `request` (see
   * parkedShape); undefined for a request no sandbox can run (its boot says why).
   */
  private shapeOf(request: BootRequest): string | undefined {
    try {
      return parkedShape(this.specFor(request, 'shape', ID_RANGE));
    } catch {
      return undefined;
    }
  }

  private cgroupLimitsOf(request: BootRequest): CgroupLimits {
    const limits = { ...DEFAULT_LIMITS, ...request.limits };
    return { memoryBytes: limits.memoryBytes, cpus: limits.cpus, cpuPeriodUs: CPU_PERIOD_US, pidsMax: limits.pidsMax };
  }

  /** Boots a sandbox for a boot like `request`, as far as its program. */
  private park(request: BootRequest): Promise<ParkedBoot> {
    return this.withResources({ ...request, id: undefined }, async ({ spec, cgroup, cgroupLimits, hostIdBase }) => {
      const parked = await this.launcher.park(spec);
      return { spec, shape: parkedShape(spec), cgroup, cgroupLimits, hostIdBase, parked };
    });
  }

  /** Runs `request`'s program in a parked sandbox of its shape; on failure, the parked one is gone. */
  private async startParked(parked: ParkedBoot, request: BootRequest): Promise<Sandbox> {
    const { cgroup, hostIdBase } = parked;
    try {
      const cgroupLimits = this.cgroupLimitsOf(request);
      if (!sameLimits(cgroupLimits, parked.cgroupLimits)) this.cgroups.setLimits(cgroup, cgroupLimits, parked.cgroupLimits);
      const spec = this.specFor(request, parked.spec.id, hostIdBase, cgroup);
      return this.register(spec, cgroup, hostIdBase, await this.launcher.start(spec));
    } catch (error) {
      await this.releaseParked(parked);
      throw error;
    }
  }

  /** Gives back all a parked sandbox holds: its processes, cgroup and ids. */
  private async releaseParked(boot: ParkedBoot): Promise<void> {
    this.cgroups.kill(boot.cgroup, boot.parked.initPid);
    this.launcher.unpark(boot.spec.id);
    await awaitMonitorGone(boot.parked.monitorPid, boot.parked.initPid, boot.parked.gone);
    await this.cgroups.destroy(boot.cgroup).catch(() => {});
    this.ids.release(boot.hostIdBase);
  }

  /** Destroys every sandbox, stops the launcher, removes fnbox's cgroups. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // A boot that answers during the close registers its sandbox after
      // we listed them, and one that fails removes its cgroup on its own
      // time: either way the parent cgroups could not go. Let them finish.
      await this.booting.settled();
      await Promise.all(this.live().map((sandbox) => sandbox.destroy()));
      await this.parkedReserve.close();
      await this.booting.settled();
      await this.launcher.close();
      await this.cgroupReserve.close();
      await this.cgroups.close();
      this.ids.releaseAll();
      rmSync(join(this.stateDir, 'run'), { recursive: true, force: true });
    })();
    return this.closing;
  }
}
