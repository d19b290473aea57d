// Routes calls to the pool of each function's active revision. A new
// revision gets a new pool; the old one drains (calls in flight finish on
// the old version) and is then destroyed. Knows nothing about HTTP.
import { availableParallelism, totalmem } from 'node:os';
import { FnboxError } from '../errors.js';
import type { ImageStore } from '../images/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { DEFAULT_WORKER_LIMITS, type Worker, type CancelSignal, type InvokeRequest, type WorkerConfig } from '../runtime/worker.js';
import type { SandboxHost } from '../sandbox/index.js';
import type { Deployment, FunctionStore, StoredFunction } from '../store/store.js';
import { Capacity } from './capacity.js';
import { FunctionPool, type CallResult } from './pool.js';
import { SparePool } from './spares.js';

export interface DispatcherOptions {
  /** Sum of all sandboxes' memory limits; default half the machine's memory. */
  capacityBytes?: number;
  maxPayloadBytes?: number;
  maxResponseBytes?: number;
  /** How long a call may wait in a function's queue. */
  queueWaitMs?: number;
  /** Spare runtimes kept per shape in use (src/pool/spares.ts); 0: none. */
  sparesPerShape?: number;
  /** How long a running call outlives its caller's hang-up (WorkerConfig.hangupGraceMs). */
  hangupGraceMs?: number;
}

export class Dispatcher {
  private readonly pools = new Map<string, FunctionPool>();
  private readonly draining = new Set<FunctionPool>();
  readonly capacity: Capacity;
  readonly spares: SparePool;
  private readonly options: Required<DispatcherOptions>;
  private closed = false;
  /** Functions being deleted: no new pool for them, or it would outlive the function. */
  private readonly removing = new Set<string>();

  constructor(
    private readonly host: SandboxHost,
    private readonly images: ImageStore,
    private readonly store: FunctionStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    options: DispatcherOptions = {},
  ) {
    this.options = {
      capacityBytes: options.capacityBytes ?? Math.floor(totalmem() / 2),
      maxPayloadBytes: options.maxPayloadBytes ?? DEFAULT_WORKER_LIMITS.maxPayloadBytes,
      maxResponseBytes: options.maxResponseBytes ?? DEFAULT_WORKER_LIMITS.maxResponseBytes,
      queueWaitMs: options.queueWaitMs ?? 10_000,
      sparesPerShape: options.sparesPerShape ?? 1,
      hangupGraceMs: options.hangupGraceMs ?? DEFAULT_WORKER_LIMITS.hangupGraceMs,
    };
    this.capacity = new Capacity(this.options.capacityBytes, (used) => metrics.capacityBytes.set({ kind: 'used' }, used));
    this.spares = new SparePool(this.options.sparesPerShape, { host, images, capacity: this.capacity, metrics, log });
    metrics.countSparesWith(() => this.spares.stats());
    metrics.capacityBytes.set({ kind: 'limit' }, this.options.capacityBytes);
    metrics.countSandboxesWith(() => this.allPools().map((pool) => {
      const { idle, busy, booting } = pool.stats;
      return { functionName: pool.config.functionName, idle, busy, booting };
    }));
  }

  get limits(): Required<DispatcherOptions> {
    return this.options;
  }

  workerConfig(name: string, deployment: Deployment): WorkerConfig {
    const m = deployment.manifest;
    return {
      ...DEFAULT_WORKER_LIMITS,
      functionName: name,
      runtime: m.runtime,
      handler: m.handler,
      codeLayer: this.store.codeLayer(name, deployment.version),
      env: m.env,
      memoryMb: m.memoryMb,
      cpus: Math.min(m.cpus, availableParallelism()),
      timeoutMs: m.timeoutMs,
      tmpMb: m.tmpMb,
      pidsMax: m.pidsMax,
      maxPayloadBytes: this.options.maxPayloadBytes,
      maxResponseBytes: this.options.maxResponseBytes,
      hangupGraceMs: this.options.hangupGraceMs,
    };
  }

  private createPool(fn: StoredFunction): FunctionPool {
    const m = fn.active.manifest;
    const pool = new FunctionPool({
      functionName: fn.name,
      revision: fn.active.revision,
      worker: this.workerConfig(fn.name, fn.active),
      minWarm: m.minWarm,
      maxConcurrency: m.maxConcurrency,
      queueMax: m.queueMax,
      idleTtlSec: m.idleTtlSec,
      queueWaitMs: Math.max(this.options.queueWaitMs, 0),
    }, { host: this.host, images: this.images, capacity: this.capacity, metrics: this.metrics, log: this.log, spares: this.spares });
    this.pools.set(fn.name, pool);
    this.spares.want(pool.config.worker);
    return pool;
  }

  /** The pool serving a function's active revision (made on first use). */
  pool(name: string): FunctionPool {
    // Keep-alive connections still bring calls after close(): a new pool
    // would boot sandboxes on a host that is being torn down.
    if (this.closed) throw new FnboxError('Unavailable', 'the gateway is shutting down; retry', { details: { retryAfterSec: 1 } });
    if (this.removing.has(name)) throw new FnboxError('FunctionNotFound', `function "${name}" is being deleted`);
    const fn = this.store.require(name);
    const current = this.pools.get(name);
    if (current?.config.revision === fn.active.revision) return current;
    if (current) this.retire(current);
    return this.createPool(fn);
  }

  poolIfAny(name: string): FunctionPool | undefined {
    return this.pools.get(name);
  }

  allPools(): FunctionPool[] {
    return [...this.pools.values(), ...this.draining];
  }

  /** Pre-warms every stored function with minWarm, and a spare for every shape (gateway start). */
  warmAll(): void {
    for (const fn of this.store.list()) {
      if (fn.active.manifest.minWarm > 0) this.pool(fn.name).ensureWarm();
      else this.spares.want(this.workerConfig(fn.name, fn.active));
    }
  }

  /**
   * Boots a candidate deployment once, so a function whose module cannot
   * load is refused at deploy time; the sandbox then serves the new pool.
   */
  async check(name: string, deployment: Deployment): Promise<Worker> {
    try {
      return await this.spares.start(this.workerConfig(name, deployment));
    } catch (error) {
      if (error instanceof FnboxError && error.code === 'InitError') {
        throw new FnboxError('InitError', error.message, { details: { ...error.details, phase: 'deploy' }, status: 400 });
      }
      throw error;
    }
  }

  /** After a deploy: route to the new revision, drain the old, pre-warm. */
  activate(name: string, checked?: Worker): void {
    const pool = this.pool(name);
    if (checked) pool.adopt(checked);
    pool.ensureWarm();
  }

  private retire(pool: FunctionPool): void {
    this.pools.delete(pool.config.functionName);
    this.draining.add(pool);
    void pool.drain().finally(() => {
      this.draining.delete(pool);
      void this.pruneSpares();
    });
  }

  /** Spares only for the shapes of functions that still exist. */
  private pruneSpares(): Promise<void> {
    return this.spares.keepOnly([...this.pools.values()].map((pool) => pool.config.worker));
  }

  /**
   * Throws what a call to `name` would get now without running (no such
   * function, shutting down, queue full): the gateway asks before it reads
   * the payload, so a refused call costs no body read and no memory.
   */
  admit(name: string): void {
    const refused = this.pool(name).refusal();
    if (!refused) return;
    this.metrics.invocations.inc({ function: name, outcome: refused.code });
    throw refused;
  }

  async invoke(name: string, request: InvokeRequest, options: { id?: string; signal?: CancelSignal } = {}): Promise<CallResult> {
    const pool = this.pool(name);
    const started = performance.now();
    try {
      const result = await pool.invoke(request, options);
      this.metrics.invocations.inc({ function: name, outcome: 'ok' });
      this.metrics.duration.observe({ function: name }, (performance.now() - started - result.queueMs) / 1000);
      if (result.coldStart) this.metrics.coldStarts.inc({ function: name });
      return result;
    } catch (error) {
      this.metrics.invocations.inc({ function: name, outcome: error instanceof FnboxError ? error.code : 'Internal' });
      throw error;
    }
  }

  /**
   * Drains and frees everything a function had, then runs `forget` (the
   * store's deletion). Until that is done, calls for it are FunctionNotFound:
   * a pool made for them meanwhile would keep sandboxes of a deleted function.
   */
  async remove(name: string, forget: () => Promise<unknown> = async () => {}): Promise<void> {
    this.removing.add(name);
    try {
      const pool = this.pools.get(name);
      this.pools.delete(name);
      if (pool) await pool.drain();
      await forget();
    } finally {
      this.removing.delete(name);
    }
    await this.pruneSpares();
  }

  /** Shutdown: let calls in flight finish (up to the deadline), destroy every sandbox. */
  async close(deadlineMs = 10_000): Promise<void> {
    this.closed = true;
    const all = this.allPools();
    this.pools.clear();
    await Promise.all(all.map((pool) => pool.drain(deadlineMs)));
    // Only then: a call accepted before the close may still be waiting to adopt a spare.
    await this.spares.close();
  }
}
