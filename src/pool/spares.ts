// Spare runtimes: sandboxes whose runtime is started but has no function
// yet, a few per shape (runtime + the limits fixed at boot) that deployed
// functions use. A cold start adopts one (Worker.adopt: the function's code
// layer swapped in, the module loaded: a few ms) instead of booting a
// sandbox and starting an interpreter (tens of ms for node), and the shape
// is refilled off the request path. A spare serves one function for life:
// nothing that ran a function's code comes back here. Spares take only free
// capacity and are the first thing evicted when a function needs room.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FnboxError } from '../errors.js';
import type { ImageStore } from '../images/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { spareShapeKey, Worker, type SpareShape, type WorkerConfig } from '../runtime/worker.js';
import type { SandboxHost } from '../sandbox/index.js';
import type { Capacity, Evictable } from './capacity.js';

export interface SparePoolDeps {
  host: SandboxHost;
  images: ImageStore;
  capacity: Capacity;
  metrics: Metrics;
  log: Logger;
}

interface ShapeState {
  key: string;
  shape: SpareShape;
  ready: Worker[];
  /** Boots in flight; evicting one cancels it (its room is free at once). */
  booting: Set<SpareBoot>;
  lastWanted: number;
}

interface SpareBoot {
  cancelled: boolean;
  /** Settles once the boot's sandbox serves as a spare or is gone. */
  done: Promise<void>;
}

/** Shapes kept at once: each holds perShape sandboxes' worth of memory. */
const MAX_SHAPES = 8;
/** A refill waits this long: the call that took the spare runs first. */
const REFILL_DELAY_MS = 20;

export class SparePool implements Evictable {
  private readonly shapes = new Map<string, ShapeState>();
  private readonly emptyLayer: string;
  private closed = false;

  constructor(readonly perShape: number, private readonly deps: SparePoolDeps) {
    // The code layer of a spare: an empty code/ (an overlay lower must exist).
    this.emptyLayer = join(deps.host.stateDir, 'spare-layer');
    mkdirSync(join(this.emptyLayer, 'code'), { recursive: true, mode: 0o755 });
    deps.capacity.join(this);
  }

  /** Keeps spares of a function's shape ready. */
  want(config: WorkerConfig): void {
    if (this.perShape <= 0 || this.closed) return;
    const key = spareShapeKey(config);
    let state = this.shapes.get(key);
    if (!state) {
      const { runtime, memoryMb, cpus, tmpMb, pidsMax } = config;
      state = { key, shape: { runtime, memoryMb, cpus, tmpMb, pidsMax }, ready: [], booting: new Set(), lastWanted: 0 };
      this.shapes.set(key, state);
      this.forgetOldShapes();
    }
    state.lastWanted = Date.now();
    this.refill(state);
  }

  /**
   * Drops the spares of shapes no function in `inUse` has (a function was
   * deleted or changed); resolves once their sandboxes are gone.
   */
  async keepOnly(inUse: WorkerConfig[]): Promise<void> {
    const keys = new Set(inUse.map((config) => spareShapeKey(config)));
    const gone: Array<Promise<void>> = [];
    for (const state of this.shapes.values()) {
      if (!keys.has(state.key)) gone.push(this.drop(state));
    }
    await Promise.all(gone);
  }

  /**
   * A ready spare of the function's shape, handed over to the caller (who
   * adopts it and reserves its memory), or undefined.
   */
  take(config: WorkerConfig): Worker | undefined {
    const state = this.shapes.get(spareShapeKey(config));
    if (!state) return undefined;
    state.lastWanted = Date.now();
    // A dead one stays listed until its onGone releases its room.
    const spare = state.ready.find((worker) => worker.state === 'spare');
    if (!spare) return undefined;
    state.ready.splice(state.ready.indexOf(spare), 1);
    this.deps.capacity.release(this.bytes(state.shape));
    setTimeout(() => this.refill(state), REFILL_DELAY_MS).unref();
    return spare;
  }

  /**
   * A worker for a function: an adopted spare of its shape when one is
   * ready, else a fresh boot. A spare that fails for a reason of its own
   * (not the function's InitError) is replaced by a boot.
   */
  async start(config: WorkerConfig): Promise<Worker> {
    const spare = this.take(config);
    if (spare) {
      try {
        await spare.adopt(config);
        this.deps.metrics.spareAdoptions.inc({ function: config.functionName });
        return spare;
      } catch (error) {
        if (error instanceof FnboxError && error.code === 'InitError') throw error;
        this.deps.log.warn({ fn: config.functionName, err: (error as Error).message }, 'spare adoption failed; booting instead');
      }
    }
    return Worker.start(this.deps.host, this.deps.images, config);
  }

  /** Spares by shape, for /healthz and metrics. */
  stats(): Array<{ shape: string; runtime: string; ready: number; booting: number }> {
    return [...this.shapes].map(([shape, state]) => ({ shape, runtime: state.shape.runtime, ready: state.ready.length, booting: state.booting.size }));
  }

  liveWorkers(): Worker[] {
    return [...this.shapes.values()].flatMap((state) => state.ready);
  }

  evictionCandidate(): { lastUsedAt: number; evict: () => void } | undefined {
    // Least recently wanted shape first; a spare is cheaper to lose than any function's sandbox.
    const state = [...this.shapes.values()].filter((s) => s.ready.length || s.booting.size).sort((a, b) => a.lastWanted - b.lastWanted)[0];
    if (!state) return undefined;
    if (state.ready.length) return { lastUsedAt: 0, evict: () => void this.discard(state, state.ready[0]!) };
    const boot = state.booting.values().next().value!;
    return { lastUsedAt: 0, evict: () => this.cancel(state, boot) };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.shapes.values()].map((state) => this.drop(state)));
    this.deps.capacity.leave(this);
  }

  /** Forgets a shape: its ready spares are destroyed, its boots cancelled and awaited. */
  private async drop(state: ShapeState): Promise<void> {
    this.shapes.delete(state.key);
    const gone = [...state.ready].map((spare) => this.discard(state, spare));
    for (const boot of [...state.booting]) {
      this.cancel(state, boot);
      gone.push(boot.done);
    }
    await Promise.all(gone);
  }

  private cancel(state: ShapeState, boot: SpareBoot): void {
    boot.cancelled = true;
    state.booting.delete(boot);
    this.deps.capacity.release(this.bytes(state.shape));
  }

  /** Still a shape we keep spares for (not dropped, pool not closed). */
  private kept(state: ShapeState): boolean {
    return !this.closed && this.shapes.get(state.key) === state;
  }

  private bytes(shape: SpareShape): number {
    return shape.memoryMb * 1024 * 1024;
  }

  private refill(state: ShapeState): void {
    while (this.kept(state) && state.ready.length + state.booting.size < this.perShape) {
      if (!this.deps.capacity.reserve(this.bytes(state.shape), this, false)) return;
      const boot: SpareBoot = { cancelled: false, done: Promise.resolve() };
      state.booting.add(boot);
      boot.done = this.boot(state, boot);
    }
  }

  private async boot(state: ShapeState, boot: SpareBoot): Promise<void> {
    let spare: Worker;
    try {
      spare = await Worker.startSpare(this.deps.host, this.deps.images, state.shape, this.emptyLayer);
    } catch (error) {
      if (!boot.cancelled) this.deps.capacity.release(this.bytes(state.shape));
      state.booting.delete(boot);
      this.deps.log.warn({ shape: state.key, err: (error as Error).message }, 'spare boot failed');
      return;
    }
    state.booting.delete(boot);
    if (boot.cancelled || !this.kept(state)) {
      if (!boot.cancelled) this.deps.capacity.release(this.bytes(state.shape));
      await spare.destroy();
      return;
    }
    state.ready.push(spare);
    // A spare that dies while waiting (it should not) frees its room.
    spare.onGone(() => {
      const at = state.ready.indexOf(spare);
      if (at >= 0) {
        state.ready.splice(at, 1);
        this.deps.capacity.release(this.bytes(state.shape));
      }
    });
  }

  private discard(state: ShapeState, spare: Worker): Promise<void> {
    const at = state.ready.indexOf(spare);
    if (at >= 0) state.ready.splice(at, 1);
    this.deps.capacity.release(this.bytes(state.shape));
    return spare.destroy();
  }

  private forgetOldShapes(): void {
    while (this.shapes.size > MAX_SHAPES) {
      const oldest = [...this.shapes.values()].sort((a, b) => a.lastWanted - b.lastWanted)[0]!;
      void this.drop(oldest);
    }
  }
}
