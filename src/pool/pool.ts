// The warm pool of one deployed revision: a p-queue whose concurrency is
// maxConcurrency, a bounded wait (queueMax, and a queue-wait budget), and
// the sandboxes that serve it: pre-warmed (minWarm), booted on demand (and
// ahead of demand while calls wait), scaled down after idleTtlSec.
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import { FnboxError } from '../errors.js';
import { InFlight } from '../in-flight.js';
import type { ImageStore } from '../images/index.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { SandboxHost } from '../sandbox/index.js';
import { cancelledByCaller, type CancelSignal, type InvokeRequest, type InvokeResult, type Worker, type WorkerConfig } from '../runtime/worker.js';
import type { Capacity, Evictable } from './capacity.js';
import { CrashBackoff } from './crash-backoff.js';
import type { SparePool } from './spares.js';
import { WaitBudget } from './wait-budget.js';

export interface PoolConfig {
  functionName: string;
  revision: string;
  worker: WorkerConfig;
  minWarm: number;
  maxConcurrency: number;
  queueMax: number;
  idleTtlSec: number;
  /** How long a call may wait for a sandbox before it is refused (429). */
  queueWaitMs: number;
}

export interface PoolDeps {
  host: SandboxHost;
  images: ImageStore;
  capacity: Capacity;
  metrics: Metrics;
  log: Logger;
  /** Starts this pool's workers: from a spare when one is ready. */
  spares: SparePool;
}

export interface CallResult extends InvokeResult {
  coldStart: boolean;
  queueMs: number;
}

export interface CallRecord {
  id: string;
  at: string;
  outcome: string;
  durationMs: number;
  coldStart: boolean;
  logs: string;
}

interface Waiter {
  resolve: (worker: Worker) => void;
  reject: (error: FnboxError) => void;
}

const RECENT_CALLS = 50;

export class FunctionPool implements Evictable {
  private readonly workers = new Set<Worker>();
  private readonly idle: Worker[] = [];
  private readonly prewarmed = new WeakSet<Worker>();
  private readonly reserved = new WeakSet<Worker>();
  private readonly waiters: Waiter[] = [];
  private readonly queue: PQueue;
  private readonly waitBudget: WaitBudget;
  private booting = 0;
  /** drain() waits for boots under way (a boot that ends after it destroys its sandbox). */
  private readonly boots = new InFlight();
  private draining = false;
  /** Resolves when drain() begins: a boot waiting out a back-off stops waiting. */
  private readonly drainStarted: Promise<void>;
  private startDrain!: () => void;
  private readonly backoff = new CrashBackoff();
  private readonly reaper: NodeJS.Timeout;
  readonly recent: CallRecord[] = [];
  readonly createdAt = Date.now();

  constructor(readonly config: PoolConfig, private readonly deps: PoolDeps) {
    this.drainStarted = new Promise((resolve) => (this.startDrain = resolve));
    this.queue = new PQueue({ concurrency: config.maxConcurrency });
    this.waitBudget = new WaitBudget(config.queueWaitMs);
    deps.capacity.join(this);
    this.reaper = setInterval(() => this.scaleDown(), 1000);
    this.reaper.unref();
  }

  private get memoryBytes(): number {
    return this.config.worker.memoryMb * 1024 * 1024;
  }

  get stats(): { workers: number; idle: number; busy: number; booting: number; queued: number; running: number; lostInARow: number } {
    const idle = this.idle.length;
    const live = this.liveWorkers().length;
    return { workers: live, idle, busy: Math.max(0, live - idle), booting: this.booting, queued: this.waitBudget.waiting, running: this.queue.pending, lostInARow: this.backoff.consecutiveLosses };
  }

  /**
   * Workers that can still serve: one that died stays in `workers` until
   * its onGone runs, but it no longer counts against maxConcurrency.
   */
  liveWorkers(): Worker[] {
    return [...this.workers].filter((worker) => worker.state !== 'dead');
  }

  /** Pre-warms up to minWarm sandboxes (deploy, start-up, after a crash). */
  ensureWarm(): void {
    while (!this.draining && this.workers.size + this.booting < this.config.minWarm) {
      this.boot(true).catch((error: unknown) => this.deps.log.warn({ fn: this.config.functionName, err: (error as Error).message }, 'pre-warm failed'));
    }
  }

  /** Takes over a sandbox booted elsewhere (the deploy check). */
  adopt(worker: Worker): void {
    if (!this.deps.capacity.reserve(this.memoryBytes, this)) {
      void worker.destroy();
      return;
    }
    this.track(worker, true);
    this.hand(worker);
  }

  /**
   * Why a call would be refused now (the pool drains, the queue is full),
   * or undefined: asked before the call's payload is read, and again when
   * the call arrives with it.
   */
  refusal(): FnboxError | undefined {
    const fn = this.config.functionName;
    if (this.draining) return new FnboxError('Unavailable', `${fn} is being replaced; retry`, { details: { retryAfterSec: 1 } });
    // Counted by the wait budget: a call already answered 429 may still hold its place in p-queue.
    if (this.queue.pending >= this.config.maxConcurrency && this.waitBudget.waiting >= this.config.queueMax) {
      this.deps.metrics.throttled.inc({ function: fn, reason: 'queue_full' });
      return new FnboxError('Throttled', `${fn} has ${this.config.maxConcurrency} calls running and ${this.waitBudget.waiting} waiting (queueMax ${this.config.queueMax})`, { details: { retryAfterSec: 1 } });
    }
    return undefined;
  }

  async invoke(request: InvokeRequest, options: { id?: string; signal?: CancelSignal } = {}): Promise<CallResult> {
    const fn = this.config.functionName;
    const refused = this.refusal();
    if (refused) throw refused;
    const enqueued = performance.now();
    const run = (): Promise<CallResult> => this.run(request, options, enqueued);
    // A free slot: p-queue starts the call at once, no wait budget needed.
    if (this.queue.pending < this.config.maxConcurrency) return this.queue.add(run);
    return new Promise<CallResult>((resolve, reject) => {
      const ticket = this.waitBudget.add((error) => {
        if (error) return reject(error);
        this.deps.metrics.throttled.inc({ function: fn, reason: 'queue_wait' });
        reject(new FnboxError('Throttled', `${fn}: no sandbox became free within ${this.config.queueWaitMs} ms`, { details: { retryAfterSec: Math.max(1, Math.ceil(this.config.queueWaitMs / 1000)) } }));
      });
      // A call already answered 429 gives its turn away at once.
      this.queue.add(async () => (ticket.claim() ? run().then(resolve, reject) : undefined)).catch(reject);
    });
  }

  private async run(request: InvokeRequest, options: { id?: string; signal?: CancelSignal }, enqueued: number): Promise<CallResult> {
    const fn = this.config.functionName;
    const queueMs = performance.now() - enqueued;
    this.deps.metrics.queueWait.observe({ function: fn }, queueMs / 1000);
    // A caller that hung up while queued needs no sandbox to be told so.
    if (options.signal?.aborted) throw cancelledByCaller();
    const { worker, cold } = await this.acquire(options.signal);
    try {
      const result = await worker.invoke(request, { id: options.id, signal: options.signal });
      this.backoff.succeeded();
      this.record(result.id, 'ok', result.receipt.wallMs, cold, result.logs);
      return { ...result, coldStart: cold, queueMs };
    } catch (error) {
      const typed = error as FnboxError;
      // A handler that threw kept its sandbox; one that cost it (a crash, OOM, timeout, a broken channel)
      // counts toward the back-off, a caller's hang-up does not.
      if (worker.state !== 'dead') this.backoff.succeeded();
      else if (!typed.details?.cancelled) this.backoff.lost();
      this.record(options.id ?? '', typed.code ?? 'error', performance.now() - enqueued - queueMs, cold, String(typed.details?.logs ?? ''));
      if (typed.code === 'OutOfMemory') this.deps.metrics.oomKills.inc({ function: fn });
      if (typed.code === 'Timeout') this.deps.metrics.timeouts.inc({ function: fn });
      throw Object.assign(typed, { coldStart: cold });
    } finally {
      this.release(worker);
    }
  }

  private record(id: string, outcome: string, durationMs: number, coldStart: boolean, logs: string): void {
    this.recent.push({ id, at: new Date().toISOString(), outcome, durationMs: Math.round(durationMs * 1000) / 1000, coldStart, logs });
    if (this.recent.length > RECENT_CALLS) this.recent.shift();
  }

  /**
   * An idle warm sandbox, or the next one to come free or finish booting.
   * A caller that hangs up meanwhile stops waiting at once.
   */
  private acquire(signal?: CancelSignal): Promise<{ worker: Worker; cold: boolean }> {
    while (this.idle.length) {
      const worker = this.idle.pop()!;
      if (worker.state !== 'dead') {
        return Promise.resolve({ worker, cold: false });
      }
    }
    // Wait first, then boot: a boot that fails at once must find its waiter.
    const waiting = new Promise<Worker>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.waiters.indexOf(waiter);
        if (at < 0) return;
        this.waiters.splice(at, 1);
        reject(cancelledByCaller());
      };
      const waiter: Waiter = {
        resolve: (worker) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(worker);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
    if (this.liveWorkers().length + this.booting < this.config.maxConcurrency) this.boot(false).catch(() => {});
    return waiting.then((worker) => ({ worker, cold: worker.calls === 0 && !this.prewarmed.has(worker) }));
  }

  /**
   * Calls already waiting for a sandbox get one even when no live sandbox
   * will come free for them (the ones they waited for died): one boot per
   * such call, draining or not — they were accepted.
   */
  private serveWaiters(): void {
    const live = this.liveWorkers().length;
    const needed = Math.min(this.waiters.length - this.booting - live, this.config.maxConcurrency - this.booting - live);
    for (let i = 0; i < needed; i++) this.boot(false).catch(() => {});
  }

  private release(worker: Worker): void {
    if (worker.state === 'dead') return; // its onGone does the rest
    this.hand(worker);
  }

  /** Gives a ready sandbox to the oldest waiting call, or parks it as idle. */
  private hand(worker: Worker): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(worker);
    else this.idle.push(worker);
  }

  private boot(prewarm: boolean): Promise<void> {
    return this.boots.track(this.bootOnce(prewarm));
  }

  private async bootOnce(prewarm: boolean): Promise<void> {
    const fn = this.config.functionName;
    const wait = this.backoff.delayMs();
    if (wait > 0) {
      // Counted as booting meanwhile: no second boot starts for the same need.
      this.booting++;
      this.deps.log.warn({ fn, lostInARow: this.backoff.consecutiveLosses, waitMs: wait }, 'the function lost its sandbox on its recent calls: its next boot waits');
      await Promise.race([sleep(wait), this.drainStarted]);
      this.booting--;
      if (this.draining && this.waiters.length === 0) return;
    }
    if (!this.deps.capacity.reserve(this.memoryBytes, this)) {
      this.deps.metrics.throttled.inc({ function: fn, reason: 'capacity' });
      const error = new FnboxError('Throttled', `no memory left for another ${this.config.worker.memoryMb} MiB sandbox of ${fn} (global capacity ${Math.round(this.deps.capacity.limitBytes / 2 ** 20)} MiB)`, { details: { retryAfterSec: 1 } });
      this.waiters.shift()?.reject(error);
      throw error;
    }
    this.booting++;
    let worker: Worker;
    try {
      worker = await this.deps.spares.start(this.config.worker);
    } catch (error) {
      this.booting--;
      // A module that no longer loads (an init that times out, runs out of memory) costs a boot per call too.
      this.backoff.lost();
      this.deps.capacity.release(this.memoryBytes);
      this.deps.metrics.boots.inc({ function: fn, result: 'failed' });
      const typed = error instanceof FnboxError ? error : new FnboxError('SandboxError', (error as Error).message, { cause: error });
      this.waiters.shift()?.reject(typed);
      throw typed;
    }
    this.booting--;
    this.deps.metrics.boots.inc({ function: fn, result: 'ok' });
    // While draining, a boot still serves a call that was already waiting for it.
    if (this.draining && this.waiters.length === 0) {
      this.deps.capacity.release(this.memoryBytes);
      await worker.destroy();
      return;
    }
    this.track(worker, prewarm);
    this.hand(worker);
  }

  private track(worker: Worker, prewarm: boolean): void {
    this.workers.add(worker);
    this.reserved.add(worker);
    if (prewarm) this.prewarmed.add(worker);
    worker.onGone(() => {
      this.workers.delete(worker);
      const at = this.idle.indexOf(worker);
      if (at >= 0) this.idle.splice(at, 1);
      if (this.reserved.has(worker)) {
        this.reserved.delete(worker);
        this.deps.capacity.release(this.memoryBytes);
      }
      // A crash or timeout took one: calls waiting for it get another, and the reserved floor stays warm.
      this.serveWaiters();
      if (!this.draining) this.ensureWarm();
    });
  }

  /** Idle sandboxes above minWarm that sat longer than idleTtlSec go away. */
  private scaleDown(): void {
    const cutoff = Date.now() - this.config.idleTtlSec * 1000;
    for (const worker of [...this.idle]) {
      if (this.workers.size <= this.config.minWarm) break;
      if (worker.lastUsedAt < cutoff) this.retire(worker);
    }
  }

  private retire(worker: Worker): void {
    const at = this.idle.indexOf(worker);
    if (at >= 0) this.idle.splice(at, 1);
    if (this.reserved.has(worker)) {
      this.reserved.delete(worker);
      this.deps.capacity.release(this.memoryBytes);
    }
    this.workers.delete(worker);
    void worker.destroy();
  }

  evictionCandidate(): { lastUsedAt: number; evict: () => void } | undefined {
    if (this.workers.size <= this.config.minWarm) return undefined;
    const oldest = [...this.idle].sort((a, b) => a.lastUsedAt - b.lastUsedAt)[0];
    if (!oldest) return undefined;
    return {
      lastUsedAt: oldest.lastUsedAt,
      evict: () => {
        this.deps.metrics.evictions.inc({ function: this.config.functionName });
        this.retire(oldest);
      },
    };
  }

  /** New calls go elsewhere; calls in flight finish; then every sandbox goes. */
  async drain(deadlineMs = 30_000): Promise<void> {
    this.draining = true;
    this.startDrain();
    // Calls already accepted (running, queued, waiting for a boot) finish, up to the deadline.
    await Promise.race([this.queue.onIdle(), new Promise((resolve) => setTimeout(resolve, deadlineMs).unref())]);
    const gone = (): FnboxError => new FnboxError('Unavailable', `${this.config.functionName} is shutting down; retry`);
    for (const waiter of this.waiters.splice(0)) waiter.reject(gone());
    this.waitBudget.expireAll(gone);
    this.queue.clear();
    clearInterval(this.reaper);
    const all = [...this.workers];
    for (const worker of all) this.retire(worker);
    await Promise.all(all.map((worker) => worker.destroy()));
    // Drained means nothing of ours runs: a boot still under way destroys what it made.
    await this.boots.settled();
    this.deps.capacity.leave(this);
  }
}
