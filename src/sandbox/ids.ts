// Host uid/gid ranges: each live sandbox gets its own range of ID_RANGE ids,
// so no two sandboxes share a host uid and none maps to host root. Slots
// are claimed machine-wide with O_EXCL lock files, so two gateways (or test
// runs) on one host never hand out the same range. A released slot stays
// claimed by this process and is handed out again only after REUSE_AFTER
// others were released since: a boot then costs no file create and unlink
// (on an ext4 /run, ~0.2 ms of the gateway's CPU in a burst of boots).
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { FnboxError } from '../errors.js';
import { processAlive } from '../processes.js';
import { ID_RANGE } from './spec.js';

export interface IdRangeOptions {
  /** First host id of slot 0. */
  base: number;
  slots: number;
  lockDir: string;
}

export const DEFAULT_ID_RANGES: IdRangeOptions = {
  base: 100_000_000,
  slots: 16_384,
  lockDir: '/run/fnbox/id-slots',
};

/**
 * A released range waits for this many later releases before it is used
 * again, so a host uid does not pass from one sandbox to the next at once
 * (whatever the kernel still holds for it, a dying process, a socket in
 * TIME_WAIT, is long gone by then).
 */
export const REUSE_AFTER = 64;

/** A `SLOT.stale-PID` file whose remover died between its rename and its unlink. */
function removeStaleRename(path: string): boolean {
  const remover = Number(/\.stale-(\d+)$/.exec(path)?.[1] ?? 0);
  if (!remover || processAlive(remover)) return false;
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

export class IdRanges {
  /** Slots whose lock file is ours: in use, or released and waiting in `retired`. */
  private readonly mine = new Set<number>();
  /** Released slots, oldest first; still claimed by us. */
  private readonly retired: number[] = [];
  private next: number;
  /** Lock files of processes that are gone, removed by this start. */
  readonly swept: number;

  constructor(private readonly options: IdRangeOptions = DEFAULT_ID_RANGES) {
    if (options.base < ID_RANGE || options.base + options.slots * ID_RANGE > 0xfffffffe) {
      throw new FnboxError('InvalidRequest', `uid base ${options.base} with ${options.slots} slots leaves the valid uid space`);
    }
    mkdirSync(options.lockDir, { recursive: true, mode: 0o700 });
    // Different processes start at different slots: fewer collisions to skip.
    this.next = (process.pid * 7919) % options.slots;
    this.swept = this.sweepStale();
  }

  /**
   * Removes the lock files a gateway killed with SIGKILL left (their owner
   * is gone), as a start sweeps its cgroups: otherwise they would stay
   * until a later claim happens to land on each of them.
   */
  private sweepStale(): number {
    let swept = 0;
    for (const name of readdirSync(this.options.lockDir)) {
      const slot = /^\d+$/.test(name) ? Number(name) : undefined;
      if (slot !== undefined ? this.removeIfStale(slot) : removeStaleRename(join(this.options.lockDir, name))) swept++;
    }
    return swept;
  }

  /** Claims a free range; returns its first host id. */
  acquire(): number {
    if (this.retired.length > REUSE_AFTER) return this.options.base + this.retired.shift()! * ID_RANGE;
    for (let tries = 0; tries < this.options.slots; tries++) {
      const slot = (this.next + tries) % this.options.slots;
      if (this.mine.has(slot) || !this.claim(slot)) continue;
      this.mine.add(slot);
      this.next = (slot + 1) % this.options.slots;
      return this.options.base + slot * ID_RANGE;
    }
    throw new FnboxError('Unavailable', `all ${this.options.slots} host uid ranges are in use`);
  }

  release(hostIdBase: number): void {
    const slot = (hostIdBase - this.options.base) / ID_RANGE;
    if (this.mine.has(slot) && !this.retired.includes(slot)) this.retired.push(slot);
  }

  /** Gives every slot back to the machine (host shutdown): their lock files go. */
  releaseAll(): void {
    for (const slot of this.mine) {
      try {
        unlinkSync(this.slotFile(slot));
      } catch {
        // already gone
      }
    }
    this.mine.clear();
    this.retired.length = 0;
  }

  /** Slots this process holds a lock file for, in use or waiting to be reused (tests). */
  get held(): number {
    return this.mine.size;
  }

  private slotFile(slot: number): string {
    return join(this.options.lockDir, String(slot));
  }

  private claim(slot: number): boolean {
    const file = this.slotFile(slot);
    if (this.create(file)) return true;
    // Left by a process that died: take it over.
    return this.removeIfStale(slot) && this.create(file);
  }

  /**
   * Removes a slot's lock file if the process named in it is gone. The
   * rename is atomic, so of two processes doing this at once only one
   * removes it; an empty file is one being written, not a stale one.
   */
  private removeIfStale(slot: number): boolean {
    const file = this.slotFile(slot);
    let owner: number;
    try {
      owner = Number(readFileSync(file, 'utf8'));
    } catch {
      return false;
    }
    if (!owner || processAlive(owner)) return false;
    try {
      renameSync(file, `${file}.stale-${process.pid}`);
      unlinkSync(`${file}.stale-${process.pid}`);
    } catch {
      return false;
    }
    return true;
  }

  /** O_EXCL create: false when someone else holds the slot. */
  private create(file: string): boolean {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  }
}
