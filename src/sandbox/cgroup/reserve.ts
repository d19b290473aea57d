// Sandbox cgroups made ahead of the boots that will use them. Making one
// is a handful of mkdirs and limit writes (~0.6 ms of a ~6 ms boot on the
// hybrid host, five hierarchies); done while nothing boots, a boot only
// rewrites the limits that differ from the ones the cgroup was made with.
import { randomBytes } from 'node:crypto';
import type { CgroupDriver, CgroupLimits, SandboxCgroup } from './types.js';

export interface ReservedCgroup {
  /** The sandbox id the cgroup is named after. */
  id: string;
  cgroup: SandboxCgroup;
}

export function newSandboxId(): string {
  return `sb-${randomBytes(6).toString('hex')}`;
}

export function sameLimits(a: CgroupLimits, b: CgroupLimits): boolean {
  return a.memoryBytes === b.memoryBytes && a.cpus === b.cpus && a.cpuPeriodUs === b.cpuPeriodUs && a.pidsMax === b.pidsMax;
}

export class CgroupReserve {
  private readonly ready: Array<ReservedCgroup & { limits: CgroupLimits }> = [];
  /** The limits of the latest boot: the next one is most likely alike. */
  private lastLimits?: CgroupLimits;
  private refillScheduled = false;
  private closed = false;

  constructor(
    private readonly driver: CgroupDriver,
    private readonly size: number,
  ) {}

  /** A refill is scheduled: the count may still change. */
  get refilling(): boolean {
    return this.refillScheduled;
  }

  /** How many cgroups are ready now. */
  get available(): number {
    return this.ready.length;
  }

  /** The directories of the cgroups ready now (no process is in them). */
  dirs(): string[] {
    return this.ready.flatMap(({ cgroup }) => cgroup.dirs);
  }

  /**
   * A ready cgroup holding `limits`, or undefined when none is ready. A
   * cgroup whose limits cannot be rewritten is destroyed and the error thrown.
   */
  take(limits: CgroupLimits): ReservedCgroup | undefined {
    this.lastLimits = limits;
    const reserved = this.ready.pop();
    if (!reserved) return undefined;
    if (!sameLimits(reserved.limits, limits)) {
      try {
        this.driver.setLimits(reserved.cgroup, limits, reserved.limits);
      } catch (error) {
        void this.driver.destroy(reserved.cgroup).catch(() => {});
        throw error;
      }
    }
    return { id: reserved.id, cgroup: reserved.cgroup };
  }

  /**
   * Makes the missing cgroups on later event-loop turns, one per turn, while
   * `quiet()` says nothing is booting; a boot that comes first makes its own.
   */
  refillWhen(quiet: () => boolean): void {
    if (this.refillScheduled || this.closed || !this.lastLimits || this.ready.length >= this.size) return;
    this.refillScheduled = true;
    setImmediate(() => {
      this.refillScheduled = false;
      if (this.closed || !quiet() || !this.lastLimits || this.ready.length >= this.size) return;
      const limits = this.lastLimits;
      const id = newSandboxId();
      try {
        this.ready.push({ id, cgroup: this.driver.create(id, limits), limits });
      } catch {
        // The boot that needs one will make it and report why it cannot.
        return;
      }
      this.refillWhen(quiet);
    });
  }

  /** Removes every cgroup still waiting; no more are made. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.ready.splice(0).map(({ cgroup }) => this.driver.destroy(cgroup).catch(() => {})));
  }
}
