// Sandboxes booted ahead of the boots that will use them: namespaces, ids,
// cgroup, root, /proc and /dev, privileges all set up, the program's process
// forked and waiting in front of its execve (the launcher's --park). A boot
// whose sandbox would be built the same way (spec.ts parkedShape: the same
// layers, limits, streams and policy) takes one and only sends its program:
// most of a boot's ~6 ms is then paid before it was asked for, the way the
// zygote's network namespaces already are. Each is used once; like the
// cgroup reserve, they are made while nothing boots, modelled on the latest
// boot, and one that no longer fits is let go.
import type { CgroupLimits, SandboxCgroup } from './cgroup/index.js';
import type { ParkedSandbox } from './launcher.js';
import type { SandboxSpec } from './spec.js';

export interface ParkedBoot {
  /** As parked: its own id, host ids and cgroup; its program is not sent yet. */
  spec: SandboxSpec;
  /** parkedShape(spec): a boot of the same shape may take it. */
  shape: string;
  cgroup: SandboxCgroup;
  cgroupLimits: CgroupLimits;
  hostIdBase: number;
  parked: ParkedSandbox;
}

export class ParkedReserve {
  private readonly ready: ParkedBoot[] = [];
  /** The parking under way, and the boot waiting for it, if one is. */
  private parking?: { shape: string; waiter?: (boot: ParkedBoot | undefined) => void };
  private refillScheduled = false;
  private closed = false;

  constructor(
    /** How many to keep parked (0: none). */
    private readonly size: number,
    /** Gives back everything one holds: processes, cgroup, ids. */
    private readonly release: (boot: ParkedBoot) => Promise<void>,
  ) {}

  /** A refill is scheduled or under way: what is parked may change. */
  get refilling(): boolean {
    return this.refillScheduled || this.parking !== undefined;
  }

  get available(): number {
    return this.ready.length;
  }

  /** The sandboxes parked now. */
  list(): readonly ParkedBoot[] {
    return [...this.ready];
  }

  /**
   * A parked sandbox of `shape`, now the caller's; or the one being parked
   * in that shape, once it is (a boot that came while it was under way is
   * done sooner that way than by a boot of its own beside it, which would
   * also share the CPU with it); or undefined.
   */
  async take(shape: string): Promise<ParkedBoot | undefined> {
    const index = this.ready.findIndex((boot) => boot.shape === shape);
    if (index >= 0) return this.ready.splice(index, 1)[0];
    const parking = this.parking;
    if (parking?.shape !== shape || parking.waiter) return undefined;
    return new Promise((resolve) => (parking.waiter = resolve));
  }

  /**
   * Parks sandboxes of `shape` (made by `park`) on later event-loop turns,
   * one at a time, while `quiet()` says nothing boots, until `size` are
   * ready; parked ones of another shape are let go first.
   */
  refillWhen(quiet: () => boolean, shape: string, park: () => Promise<ParkedBoot>): void {
    if (this.refillScheduled || this.parking || this.closed || this.size === 0) return;
    this.refillScheduled = true;
    setImmediate(() => {
      this.refillScheduled = false;
      if (this.parking || this.closed || !quiet()) return;
      for (const stale of this.ready.filter((boot) => boot.shape !== shape)) this.letGo(stale);
      if (this.ready.length >= this.size) return;
      const parking: NonNullable<ParkedReserve['parking']> = { shape };
      this.parking = parking;
      park().then(
        (boot) => {
          this.parking = undefined;
          if (parking.waiter && !this.closed) return parking.waiter(boot);
          parking.waiter?.(undefined);
          if (this.closed || boot.shape !== shape) return void this.release(boot);
          this.ready.push(boot);
          // Dead while parked (killed, or its setup failed late): gone from the reserve.
          void boot.parked.gone.then(() => this.letGo(boot));
          this.refillWhen(quiet, shape, park);
        },
        // The boot that wanted one boots the usual way, and says why if it cannot.
        () => {
          this.parking = undefined;
          parking.waiter?.(undefined);
        },
      );
    });
  }

  private letGo(boot: ParkedBoot): void {
    const index = this.ready.indexOf(boot);
    if (index < 0) return;
    this.ready.splice(index, 1);
    void this.release(boot);
  }

  /** Lets every parked sandbox go; none is parked after this. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.ready.splice(0).map((boot) => this.release(boot)));
  }
}
