// One live sandbox: boot, per-call root reset, stats, kill, destroy. Knows
// nothing about functions or HTTP; the runtime layer builds on it.
import { closeSync, constants, existsSync, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, statfsSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { FnboxError } from '../errors.js';
import type { CallMeter, CgroupDriver, CgroupEvents, CgroupUsage, SandboxCgroup } from './cgroup/index.js';
import type { IdRanges } from './ids.js';
import type { LaunchedSandbox, LauncherEvent } from './launcher.js';
import { HOSTNAME_PATTERN, isLayerPath, type SandboxSpec } from './spec.js';

export type ExitReason = 'exited' | 'signaled' | 'oom' | 'killed';

export interface ExitInfo {
  reason: ExitReason;
  code?: number;
  signal?: number;
  oomKills: number;
  pidsMaxHits: number;
}

export interface ResetResult {
  /** True when the call wrote nothing, so the root was kept. */
  skipped: boolean;
  /** Time the launcher spent swapping the root, in microseconds. */
  us: number;
  /** When the monitor began the swap, CLOCK_MONOTONIC in µs (`process.hrtime`'s clock); 0 when skipped. */
  startedUs: number;
  /** Processes forked during the swap that kept the old root, killed by the monitor. */
  staleKilled: number;
}

const EMPTY_TMPFS_DIR_SIZE = 40;

export const NAMESPACES = ['user', 'pid', 'mnt', 'net', 'ipc', 'uts', 'cgroup'] as const;

/** SIGKILLs `pids`, then waits (up to ~200 ms) until `anyLeft()` says none is left. */
async function killAndAwait(pids: number[], anyLeft: () => boolean): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  for (let i = 0; i < 200 && anyLeft(); i++) await sleep(1);
}

/**
 * Once a monitor was told to go (its control stream closed): waits for it,
 * SIGKILLs it if it takes over 3 s, then waits until the kernel lists
 * neither it nor the sandbox's init.
 */
export async function awaitMonitorGone(monitorPid: number, initPid: number, gone: Promise<void>): Promise<void> {
  if (!(await Promise.race([gone.then(() => true), sleep(3000).then(() => false)]))) {
    try {
      process.kill(monitorPid, 'SIGKILL');
    } catch {
      // gone
    }
    await gone;
  }
  // The control stream closes as the monitor exits, a moment before the
  // kernel has reaped it.
  for (let i = 0; i < 1000 && (existsSync(`/proc/${monitorPid}`) || existsSync(`/proc/${initPid}`)); i++) await sleep(1);
}

interface SandboxDeps {
  cgroups: CgroupDriver;
  ids: IdRanges;
  onGone: (sandbox: Sandbox) => void;
}

export class Sandbox {
  readonly id: string;
  readonly initPid: number;
  readonly monitorPid: number;
  readonly bootUs: number;
  /** When its monitor began (µs, the clock of `process.hrtime`): what came before is the gateway's and the zygote's. */
  readonly monitorStartedUs: number;
  /** It was booted ahead of its program and started by its boot (src/sandbox/parked.ts). */
  readonly bootedAhead: boolean;
  readonly createdAt = Date.now();
  /** Resolves once the sandbox's program (and with it the sandbox) is gone. */
  readonly exited: Promise<ExitInfo>;
  private exitInfo?: ExitInfo;
  /** The monitor's fd for the writable layer: one number for the sandbox's life, whichever layer it is. */
  private readonly upperFd: number;
  private upperDirFd?: number;
  private killedByUs = false;
  private destroying?: Promise<void>;
  private monitorGone: Promise<void>;
  private resetWaiters: Array<(event: Extract<LauncherEvent, { event: 'reset' }>) => void> = [];
  private syncWaiters: Array<() => void> = [];
  private resetFailedListeners: Array<(error: FnboxError) => void> = [];
  /** A reset was sent that nothing has waited for since (see resetInBackground()). */
  private unsynced = false;
  private programPid?: number;
  private callMeter?: CallMeter;
  private swapsRequested = 0;

  /** What the sandbox runs now (adopt() changes its code layer and hostname). */
  get spec(): SandboxSpec {
    return this.currentSpec;
  }

  constructor(
    private currentSpec: SandboxSpec,
    readonly cgroup: SandboxCgroup,
    readonly hostIdBase: number,
    private readonly launched: LaunchedSandbox,
    private readonly deps: SandboxDeps,
  ) {
    this.id = currentSpec.id;
    this.initPid = launched.initPid;
    this.monitorPid = launched.monitorPid;
    this.bootUs = launched.bootUs;
    this.monitorStartedUs = launched.monitorStartedUs;
    this.bootedAhead = launched.parked;
    this.upperFd = launched.upperFd;
    let resolveExit!: (info: ExitInfo) => void;
    let resolveGone!: () => void;
    this.exited = new Promise((resolve) => (resolveExit = resolve));
    this.monitorGone = new Promise((resolve) => (resolveGone = resolve));
    launched.events.listen(
      (event) => {
        if (event.event === 'exit') resolveExit(this.recordExit(event));
        else if (event.event === 'reset' && !event.ok && event.quiet) {
          const error = this.resetError(event, 'root reset');
          for (const listener of this.resetFailedListeners) listener(error);
        } else if (event.event === 'reset') this.resetWaiters.shift()?.(event);
        else if (event.event === 'sync') this.syncWaiters.shift()?.();
      },
      () => {
        // Monitor gone without an exit event: it was killed, so was the sandbox.
        resolveExit(this.exitInfo ?? this.recordExit({ event: 'exit', signal: 9 }));
        for (const waiter of this.resetWaiters.splice(0)) waiter({ event: 'reset', ok: false, quiet: false, step: 'monitor', errno: 0, message: 'the sandbox is gone' });
        for (const waiter of this.syncWaiters.splice(0)) waiter();
        resolveGone();
      },
    );
  }

  get channel(): LaunchedSandbox['channel'] {
    return this.launched.channel;
  }

  get log(): LaunchedSandbox['log'] {
    return this.launched.log;
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  private recordExit(event: Extract<LauncherEvent, { event: 'exit' }>): ExitInfo {
    if (this.exitInfo) return this.exitInfo;
    const events = this.events();
    const reason: ExitReason = events.oomKills > 0 ? 'oom' : this.killedByUs ? 'killed' : event.signal !== undefined ? 'signaled' : 'exited';
    this.exitInfo = { reason, code: event.code, signal: event.signal, ...events };
    return this.exitInfo;
  }

  /** The writable layer as the host sees it (a detached tmpfs held by the monitor). */
  get upperDir(): string {
    return `/proc/${this.monitorPid}/fd/${this.upperFd}/upper`;
  }

  /**
   * Whether anything was written to the root since the last reset. A tmpfs
   * directory's size is 40 when empty and grows 20 per entry (the kernel's
   * BOGO_DIRENT_SIZE): one fstat on the hot path. A bigger directory holds
   * entries; a smaller size (a kernel that counts differently) is checked by
   * listing, so such a kernel is only slower.
   */
  isDirty(): boolean {
    try {
      // Held open per layer: an fstat is cheaper than a walk through /proc/PID/fd on every call.
      this.upperDirFd ??= openSync(this.upperDir, constants.O_RDONLY | constants.O_DIRECTORY);
      const { size } = fstatSync(this.upperDirFd);
      if (size === EMPTY_TMPFS_DIR_SIZE) return false;
      if (size > EMPTY_TMPFS_DIR_SIZE) return true;
      return readdirSync(this.upperDir).length > 0;
    } catch {
      return true;
    }
  }

  private closeUpperDir(): void {
    if (this.upperDirFd === undefined) return;
    closeSync(this.upperDirFd);
    this.upperDirFd = undefined;
  }

  /**
   * A fresh root for the running program (DESIGN.md §2): new upperdir on a
   * new tmpfs, the process re-rooted by the monitor, the old layer detached.
   * Skipped when nothing was written.
   */
  async resetRoot(options: { force?: boolean } = {}): Promise<ResetResult> {
    if (!this.alive) throw new FnboxError('SandboxError', `sandbox ${this.id} is not running`);
    if (!options.force && !this.isDirty()) return { skipped: true, us: 0, startedUs: 0, staleKilled: 0 };
    return this.swapRoot('reset\n', 'root reset');
  }

  /**
   * Starts a root reset and does not wait for it: the monitor answers only
   * if it fails (onResetFailed). A frame sent to the program meanwhile
   * carries `swaps` as its gate: the runtime acts on it only once the
   * monitor has announced that many swaps on the gate fd, so the call
   * waits for its fresh root in the sandbox, not for a round trip through
   * the gateway; its answer then also means the swap is done. The monitor
   * kills a process forked during the swap that kept the old root; one
   * whose fork was still under way then goes as a stray after the next
   * call (killStrays), instead of at once as after resetRoot().
   */
  resetInBackground(): void {
    if (!this.alive) throw new FnboxError('SandboxError', `sandbox ${this.id} is not running`);
    this.closeUpperDir();
    this.launched.control.write('reset quiet\n');
    this.swapsRequested++;
    this.unsynced = true;
  }

  /** Calls `listener` when a reset sent by resetInBackground() fails: the sandbox is then of no further use. */
  onResetFailed(listener: (error: FnboxError) => void): void {
    this.resetFailedListeners.push(listener);
  }

  /** Resolves once the monitor has done everything asked of it so far (a background reset included). */
  async sync(): Promise<void> {
    if (!this.unsynced || !this.alive) return;
    const reply = new Promise<void>((resolve) => this.syncWaiters.push(resolve));
    this.launched.control.write('sync\n');
    await reply;
    this.unsynced = false;
  }

  /** Root swaps asked of the monitor so far (resets and adoptions): the gate a frame sent now must pass. */
  get swaps(): number {
    return this.swapsRequested;
  }

  /** Bytes the writable layer holds (its tmpfs's used blocks); Infinity when that cannot be read. */
  writtenBytes(): number {
    try {
      const stats = statfsSync(this.upperDirFd === undefined ? this.upperDir : `/proc/self/fd/${this.upperDirFd}`);
      return (stats.blocks - stats.bfree) * stats.bsize;
    } catch {
      return Number.POSITIVE_INFINITY;
    }
  }

  /**
   * Makes a spare sandbox (booted on an empty code layer, its runtime
   * loaded) one function's: the top layer becomes `codeLayer`, the
   * hostname `hostname`, and the running program moves onto a fresh root
   * with that code in it. There is no way back to spare.
   */
  async adopt(codeLayer: string, hostname: string): Promise<ResetResult> {
    if (!this.alive) throw new FnboxError('SandboxError', `sandbox ${this.id} is not running`);
    if (!isLayerPath(codeLayer)) throw new FnboxError('SandboxError', `code layer ${JSON.stringify(codeLayer)} must be an absolute path without ':', ',' or a newline`);
    if (!HOSTNAME_PATTERN.test(hostname)) throw new FnboxError('SandboxError', `hostname ${JSON.stringify(hostname)} must match ${HOSTNAME_PATTERN}`);
    const result = await this.swapRoot(`adopt ${hostname} ${codeLayer}\n`, 'adoption');
    this.currentSpec = { ...this.currentSpec, lowers: [codeLayer, ...this.currentSpec.lowers.slice(1)], hostname };
    return result;
  }

  private async swapRoot(command: string, what: string): Promise<ResetResult> {
    // Let go of the old layer first: the monitor's close is then the last one,
    // and the layer is torn down there, not in this process's event loop.
    this.closeUpperDir();
    const reply = new Promise<Extract<LauncherEvent, { event: 'reset' }>>((resolve) => this.resetWaiters.push(resolve));
    this.launched.control.write(command);
    this.swapsRequested++;
    const event = await reply;
    if (!event.ok) throw this.resetError(event, what);
    this.unsynced = false; // commands are done in order
    await this.killStaleRoots();
    return { skipped: false, us: event.us, startedUs: event.t0, staleKilled: event.stale };
  }

  private resetError(event: Extract<LauncherEvent, { event: 'reset'; ok: false }>, what: string): FnboxError {
    return new FnboxError('SandboxError', `sandbox ${this.id}: ${what} failed at ${event.step}: ${event.message}`, { details: { step: event.step, errno: event.errno } });
  }

  /**
   * pivot_root moves every process whose root is the old root, but a child
   * forked during the swap copies the old root after that walk and keeps
   * it: it would see the previous call's files. The monitor kills those it
   * sees before it lets the runtime through; a fork still under way then
   * shows up in the cgroup only later, so this looks again once the reply
   * is here.
   */
  private async killStaleRoots(): Promise<void> {
    const pids = this.meter.processes();
    // The usual case: only the init and the program, which pivot_root moved.
    if (pids.every((pid) => pid === this.initPid || pid === this.pid)) return;
    let expected: number;
    try {
      expected = statSync(`/proc/${this.initPid}/root`).dev;
    } catch {
      return;
    }
    const stale = pids.filter((pid) => {
      try {
        return statSync(`/proc/${pid}/root`).dev !== expected;
      } catch {
        return false; // exited meanwhile
      }
    });
    // Gone once its root no longer resolves (a zombie has none).
    await killAndAwait(stale, () => stale.some((pid) => existsSync(`/proc/${pid}/root`)));
  }

  usage(): CgroupUsage {
    return this.deps.cgroups.usage(this.cgroup);
  }

  /** The kernel's OOM-kill and pids.max counts; zeros once the cgroup is gone. */
  events(): CgroupEvents {
    try {
      return this.deps.cgroups.events(this.cgroup);
    } catch {
      return { oomKills: 0, pidsMaxHits: 0 };
    }
  }

  /** Cgroup files held open for per-call receipts and the stray check. */
  get meter(): CallMeter {
    this.callMeter ??= this.deps.cgroups.meter(this.cgroup);
    return this.callMeter;
  }

  /** Host PID of the program (the init's only direct child it started). */
  get pid(): number | undefined {
    if (this.programPid === undefined) {
      try {
        const children = readFileSync(`/proc/${this.initPid}/task/${this.initPid}/children`, 'utf8').trim().split(/\s+/);
        this.programPid = Number(children[0]) || undefined;
      } catch {
        return undefined;
      }
    }
    return this.programPid;
  }

  /**
   * Kills every process but the init and the program: what a call started
   * must not live into the next call. Resolves once the kernel no longer
   * counts them in the cgroup; returns how many were killed.
   */
  async killStrays(): Promise<number> {
    const strays = this.strays();
    if (strays.length === 0) return 0;
    await killAndAwait(strays, () => this.strays().some((pid) => strays.includes(pid)));
    return strays.length;
  }

  private strays(): number[] {
    let pids: number[];
    try {
      pids = this.meter.processes();
    } catch {
      return [];
    }
    if (pids.length <= 2) return []; // the init and the program
    const keep = new Set([this.initPid, this.pid]);
    return pids.filter((pid) => !keep.has(pid));
  }

  /** Namespace inodes as `ls -l /proc/PID/ns` shows them. */
  namespaces(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const ns of NAMESPACES) {
      try {
        out[ns] = readlinkSync(`/proc/${this.initPid}/ns/${ns}`);
      } catch {
        // gone
      }
    }
    return out;
  }

  /** Kills the whole sandbox at once (cgroup.kill, or its PID 1 on v1). */
  kill(): void {
    if (!this.alive) return;
    this.killedByUs = true;
    this.deps.cgroups.kill(this.cgroup, this.initPid);
  }

  /** Removes every process, mount, cgroup and id the sandbox had. Idempotent. */
  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    this.kill();
    // Closing the control stream also tells the monitor to kill its child.
    this.launched.control.end();
    await awaitMonitorGone(this.monitorPid, this.initPid, this.monitorGone);
    for (const socket of [this.launched.control, this.launched.channel, this.launched.log]) socket?.destroy();
    this.callMeter?.close();
    this.closeUpperDir();
    await this.deps.cgroups.destroy(this.cgroup);
    this.deps.ids.release(this.hostIdBase);
    this.deps.onGone(this);
  }
}
