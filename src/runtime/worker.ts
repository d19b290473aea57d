// A warm runtime in a sandbox: boot it, wait for "ready", then invoke calls
// one at a time over the framed channel. Between calls: processes the call
// left behind are killed and, when the call wrote files, the root is reset,
// so the next call sees a fresh filesystem in the same warm process. The
// next call need not wait for that reset here: its frame names the swaps
// the runtime must see announced on its gate before it starts.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { FnboxError } from '../errors.js';
import type { ImageStore } from '../images/index.js';
import type { Sandbox, SandboxHost } from '../sandbox/index.js';
import { ChannelBudget } from './channel-budget.js';
import { RUNTIMES, type RuntimeKind } from './kinds.js';
import { encodeFrame, FrameDecoder, FrameTooLargeError, parseRuntimeHeader, ProtocolError, type AdoptHeader, type Frame, type InvokeHeader, type Pairs, type RuntimeHeader } from './protocol.js';

export interface WorkerConfig {
  functionName: string;
  runtime: RuntimeKind;
  handler: string;
  /** Directory holding `code/`: the function's read-only layer. */
  codeLayer: string;
  env: Record<string, string>;
  memoryMb: number;
  cpus?: number;
  timeoutMs: number;
  tmpMb: number;
  pidsMax: number;
  maxPayloadBytes: number;
  maxResponseBytes: number;
  maxLogBytes: number;
  initTimeoutMs: number;
  /**
   * A running call whose caller hung up runs on this long: one that ends
   * meanwhile keeps its sandbox warm (the answer is dropped); one that does
   * not is stopped and its sandbox replaced. 0: stopped at once.
   */
  hangupGraceMs: number;
}

export const DEFAULT_WORKER_LIMITS = {
  memoryMb: 128,
  cpus: 1,
  timeoutMs: 30_000,
  tmpMb: 64,
  pidsMax: 64,
  maxPayloadBytes: 6 * 1024 * 1024,
  maxResponseBytes: 6 * 1024 * 1024,
  maxLogBytes: 64 * 1024,
  initTimeoutMs: 10_000,
  hangupGraceMs: 1000,
};

export interface InvokeRequest {
  method: string;
  url: string;
  headers: Pairs;
  body: Buffer;
}

export interface Receipt {
  wallMs: number;
  cpuMs: number;
  memoryPeakBytes: number;
}

export interface InvokeResult {
  id: string;
  status: number;
  headers: Pairs;
  body: Buffer;
  logs: string;
  receipt: Receipt;
}

/** The caller hung up: its call is dropped, wherever it was. */
export function cancelledByCaller(): FnboxError {
  return new FnboxError('Unavailable', 'the call was cancelled by the caller', { details: { cancelled: true } });
}

/** What invoke() uses of an AbortSignal; the gateway passes a lighter one of its own per request. */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export interface InvokeOptions {
  id?: string;
  timeoutMs?: number;
  signal?: CancelSignal;
}

/** spare: a runtime with no function yet, waiting for adopt(). */
type WorkerState = 'spare' | 'idle' | 'busy' | 'dead';

/**
 * The limits a sandbox is booted with (cgroup, tmpfs, rlimits, the V8 heap
 * flag): a spare can be adopted only by a function of the same shape.
 */
export type SpareShape = Pick<WorkerConfig, 'runtime' | 'memoryMb' | 'cpus' | 'tmpMb' | 'pidsMax'>;

export function spareShapeKey(shape: SpareShape): string {
  return `${shape.runtime}/${shape.memoryMb}MiB/${shape.cpus ?? 'uncapped'}cpu/${shape.tmpMb}MiB-tmp/${shape.pidsMax}pids`;
}

/** What a runtime is told about its function: FNBOX_* variables at boot, or the adopt frame. */
function runtimeSettings(config: WorkerConfig): Record<string, string> {
  return {
    FNBOX_HANDLER: config.handler,
    FNBOX_FUNCTION: config.functionName,
    FNBOX_MEMORY_MB: String(config.memoryMb),
    FNBOX_MAX_RESPONSE_BYTES: String(config.maxResponseBytes),
    FNBOX_MAX_LOG_BYTES: String(config.maxLogBytes),
  };
}

const hostnameOf = (config: WorkerConfig): string => config.functionName.slice(0, 63);

interface ActiveCall {
  id: string;
  logs: Buffer[];
  logBytes: number;
  /** Bytes of log dropped past the cap, here or already in the runtime. */
  droppedLog: number;
  settle: (outcome: { frame?: Frame<RuntimeHeader>; error?: FnboxError }) => void;
}

const TAIL_BYTES = 4096;
/** One chunk of stray output per this many ms, once a call's worth was read. */
const STRAY_THROTTLE_MS = 10;
/** Frames handled per turn of the event loop (see receive). */
const FRAMES_PER_TURN = 128;
/** How long an exit waits for the runtime's last frames (its init_error, a result). */
const CHANNEL_DRAIN_MS = 200;

export class Worker {
  state: WorkerState = 'busy';
  calls = 0;
  lastUsedAt = Date.now();
  readonly startedAt = Date.now();
  /** From boot (or adoption) to ready, including the first root reset. */
  bootMs = 0;
  /** Started as a spare and adopted: the cold start skipped boot and interpreter start. */
  adopted = false;
  private active?: ActiveCall;
  private settling: Promise<void> = Promise.resolve();
  /** The cpu counter when the receipt window of the next call opened. */
  private meterStart?: number;
  private recentOutput: Buffer[] = [];
  private recentBytes = 0;
  private readonly decoder: FrameDecoder;
  private onFrame?: (frame: Frame<RuntimeHeader>) => void;
  /** Bytes on the sandbox's own stdout/stderr since the current call started. */
  private strayBytes = 0;
  /** What the sandbox may still send before the next call starts. */
  private readonly budget = new ChannelBudget(() => this.config);
  /** Why the channel was given up on, for a start-up that ends that way. */
  private brokenChannel?: FnboxError;
  private readonly goneListeners: Array<(worker: Worker) => void> = [];
  /** Resolves once the runtime's end of the channel is gone and everything it sent was read. */
  private readonly channelClosed: Promise<void>;

  private constructor(readonly sandbox: Sandbox, private currentConfig: WorkerConfig) {
    this.decoder = new FrameDecoder(currentConfig.maxResponseBytes + currentConfig.maxLogBytes);
    const channel = sandbox.channel!;
    this.channelClosed = new Promise((resolve) => channel.once('close', () => resolve()));
    channel.on('data', (chunk: Buffer) => this.receive(chunk));
    channel.on('error', () => {});
    channel.resume();
    sandbox.log!.on('data', (chunk: Buffer) => this.strayOutput(chunk));
    sandbox.log!.on('error', () => {});
    sandbox.log!.resume();
    void sandbox.exited.then(() => this.onSandboxExit());
    // A reset the next call may already wait on at the gate: if it fails, so does that call, now.
    sandbox.onResetFailed((error) => {
      this.active?.settle({ error });
      this.retire();
    });
  }

  /** The function this worker serves (a spare's placeholder until adopt()). */
  get config(): WorkerConfig {
    return this.currentConfig;
  }

  /** Boots the runtime and resolves once the function is loaded. */
  static async start(host: SandboxHost, images: ImageStore, config: WorkerConfig): Promise<Worker> {
    const started = performance.now();
    const worker = await Worker.boot(host, images, config, { ...config.env, ...runtimeSettings(config) });
    try {
      await worker.waitReady();
      // Start calls on a fresh layer: the boot layer stays pinned by the
      // runtime's own executable mappings, so nothing a call writes may land there.
      await worker.sandbox.resetRoot({ force: true });
    } catch (error) {
      await worker.sandbox.destroy();
      throw error;
    }
    worker.becomeIdle(started);
    return worker;
  }

  /**
   * Boots a runtime for no function yet, on `emptyLayer` (a directory with
   * an empty code/): the interpreter is started and its loader warm, so a
   * cold start that adopt()s it skips the boot and the interpreter start.
   */
  static async startSpare(host: SandboxHost, images: ImageStore, shape: SpareShape, emptyLayer: string): Promise<Worker> {
    const config: WorkerConfig = { ...DEFAULT_WORKER_LIMITS, ...shape, functionName: 'spare', handler: '', codeLayer: emptyLayer, env: {} };
    const worker = await Worker.boot(host, images, config, { FNBOX_SPARE: '1', FNBOX_MEMORY_MB: String(shape.memoryMb) });
    try {
      await worker.waitReady();
    } catch (error) {
      await worker.sandbox.destroy();
      throw error;
    }
    worker.state = 'spare';
    return worker;
  }

  private static async boot(host: SandboxHost, images: ImageStore, config: WorkerConfig, env: Record<string, string>): Promise<Worker> {
    const launch = RUNTIMES[config.runtime];
    const image = await images.get(launch.image);
    const sandbox = await host.boot({
      layers: [config.codeLayer, image.rootfs],
      argv: launch.argv(image, config.memoryMb),
      cwd: '/code',
      env: { ...env, ...launch.env },
      hostname: hostnameOf(config),
      limits: {
        memoryBytes: config.memoryMb * 1024 * 1024,
        cpus: config.cpus,
        pidsMax: config.pidsMax,
        tmpBytes: config.tmpMb * 1024 * 1024,
      },
      channel: true,
      captureLogs: true,
    });
    return new Worker(sandbox, config);
  }

  /**
   * Makes this spare the function's: the sandbox gets the function's code
   * layer and hostname on a fresh root (Sandbox.adopt), the runtime loads
   * the function and reports ready. A spare serves one function for life.
   */
  async adopt(config: WorkerConfig): Promise<void> {
    if (this.state !== 'spare') throw new FnboxError('SandboxError', `only a spare can be adopted; this worker is ${this.state}`);
    if (spareShapeKey(config) !== spareShapeKey(this.config)) {
      throw new FnboxError('SandboxError', `a spare of shape ${spareShapeKey(this.config)} cannot serve a function of shape ${spareShapeKey(config)}`);
    }
    const started = performance.now();
    this.state = 'busy';
    this.currentConfig = config;
    this.decoder.maxBodyBytes = config.maxResponseBytes + config.maxLogBytes;
    try {
      await this.sandbox.adopt(config.codeLayer, hostnameOf(config));
      const ready = this.waitReady();
      const adoption: AdoptHeader = { k: 'adopt', settings: runtimeSettings(config), env: { ...config.env, ...RUNTIMES[config.runtime].env } };
      for (const part of encodeFrame(adoption)) this.sandbox.channel!.write(part);
      await ready;
      // Whatever loading the function wrote is not the first call's to see.
      await this.sandbox.resetRoot();
    } catch (error) {
      await this.destroy();
      throw error;
    }
    this.adopted = true;
    this.becomeIdle(started);
  }

  private becomeIdle(startedAt: number): void {
    this.armMeter();
    this.bootMs = performance.now() - startedAt;
    this.state = 'idle';
  }

  private waitReady(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // Settles once, for this wait only: a spare waits twice (boot, adoption),
      // and the first wait's exit watch must not end the second.
      const settle = (error?: FnboxError): void => {
        if (this.onFrame !== onFrame) return;
        clearTimeout(timer);
        this.onFrame = undefined;
        if (error) reject(error);
        else resolve();
      };
      const onFrame = (frame: Frame<RuntimeHeader>): void => {
        if (frame.header.k === 'ready') settle();
        else if (frame.header.k === 'init_error') settle(new FnboxError('InitError', `the function failed to load: ${frame.header.message}`, { details: { stack: frame.header.stack } }));
      };
      this.onFrame = onFrame;
      const timer = setTimeout(() => settle(new FnboxError('InitError', `the ${this.config.runtime} runtime did not report ready within ${this.config.initTimeoutMs} ms`, {
        details: { output: this.tail() },
      })), this.config.initTimeoutMs);
      void this.sandbox.exited.then(async (exit) => {
        // The runtime's last words (its init_error) come first on the channel,
        // but the exit event travels on the monitor's socket and can overtake them.
        await Promise.race([this.channelClosed, sleep(CHANNEL_DRAIN_MS)]);
        if (this.brokenChannel) {
          settle(new FnboxError('InitError', `the ${this.config.runtime} runtime failed to start: ${this.brokenChannel.message}`, { details: { output: this.tail() } }));
          return;
        }
        settle(new FnboxError('InitError', `the ${this.config.runtime} runtime exited during start-up (${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`}${exit.reason === 'oom' ? ', out of memory' : ''})`, {
          details: { output: this.tail() },
        }));
      });
    });
  }

  /** Resolves once the previous call's clean-up (stray kill, root reset) is done. */
  async whenIdle(): Promise<void> {
    await this.settling;
    await this.sandbox.sync();
  }

  onGone(listener: (worker: Worker) => void): void {
    this.goneListeners.push(listener);
  }

  /** Invokes the function once. Rejects with a typed FnboxError. */
  async invoke(request: InvokeRequest, options: InvokeOptions = {}): Promise<InvokeResult> {
    await this.settling;
    if (this.state !== 'idle') throw new FnboxError('Unavailable', `worker for ${this.config.functionName} is ${this.state}`);
    if (options.signal?.aborted) throw cancelledByCaller();
    if (request.body.length > this.config.maxPayloadBytes) {
      throw new FnboxError('PayloadTooLarge', `the payload of ${request.body.length} bytes exceeds the limit of ${this.config.maxPayloadBytes} bytes`);
    }
    this.state = 'busy';
    const id = options.id ?? randomUUID();
    const timeoutMs = options.timeoutMs ?? this.config.timeoutMs;
    const started = performance.now();
    const cpuBefore = this.meterStart ?? this.sandbox.meter.begin();
    this.meterStart = undefined;
    const outcome = new Promise<{ frame?: Frame<RuntimeHeader>; error?: FnboxError }>((resolve) => {
      this.active = { id, logs: [], logBytes: 0, droppedLog: 0, settle: resolve };
    });
    const call = this.active!;
    const timer = setTimeout(() => call.settle({ error: new FnboxError('Timeout', `the call did not finish within ${timeoutMs} ms`, { details: { timeoutMs } }) }), timeoutMs);
    // Stopping a running call costs its sandbox (a kill and a new boot, ~10x
    // the machine CPU of a call): a call that is about to end anyway ends.
    let grace: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      grace = setTimeout(() => call.settle({ error: cancelledByCaller() }), this.config.hangupGraceMs);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.budget.reset();
    this.strayBytes = 0;
    const invocation: InvokeHeader = {
      k: 'invoke', id, deadline: Date.now() + timeoutMs, method: request.method, url: request.url, headers: request.headers, gate: this.sandbox.swaps,
    };
    for (const part of encodeFrame(invocation, request.body)) this.sandbox.channel!.write(part);
    const { frame, error } = await outcome;
    clearTimeout(timer);
    clearTimeout(grace);
    options.signal?.removeEventListener('abort', onAbort);
    this.active = undefined;
    const wallMs = performance.now() - started;
    const logs = this.callLogs(call);

    if (error) {
      // Timeout, crash, cancellation: the sandbox's state can no longer be trusted.
      if (error.code === 'Timeout') this.notePidsLimit(error, this.sandbox.events().pidsMaxHits);
      this.retire();
      error.details.logs ??= logs;
      throw error;
    }
    const after = this.sandbox.meter.end();
    const receipt: Receipt = { wallMs, cpuMs: Math.max(0, after.cpuUsageUs - cpuBefore) / 1000, memoryPeakBytes: after.memoryPeakBytes };
    this.calls++;
    this.lastUsedAt = Date.now();
    this.settling = this.settle();
    const header = frame!.header;
    if (header.k === 'error') {
      throw new FnboxError('Unhandled', header.message, { details: { name: header.name, stack: header.stack, logs, receipt, invocationId: id } });
    }
    if (header.k !== 'result') throw new FnboxError('SandboxError', `unexpected ${header.k} frame from the runtime`);
    return { id, status: header.status, headers: header.headers, body: frame!.body, logs, receipt };
  }

  /** After a call: kill what it left running, give it a fresh root if it wrote any. */
  private async settle(): Promise<void> {
    try {
      await this.sandbox.killStrays();
      if (this.sandbox.isDirty()) {
        // A small layer is swapped while the next call is on its way (it waits at the runtime's gate).
        // After a bigger one the next call waits here: its memory peak is armed when it is sent.
        if (this.sandbox.writtenBytes() <= this.sandbox.spec.smallLayerBytes) this.sandbox.resetInBackground();
        else await this.sandbox.resetRoot({ force: true });
      }
      this.armMeter();
      if (this.state === 'busy') this.state = 'idle';
    } catch {
      this.retire();
    }
  }

  /**
   * Starts the next call's receipt while idle: the peak-memory window opens
   * and the cpu counter is read now, so a call's first syscall is its frame.
   */
  private armMeter(): void {
    this.meterStart = this.sandbox.meter.begin();
  }

  private callLogs(call: ActiveCall): string {
    let text = Buffer.concat(call.logs).toString('utf8');
    if (call.droppedLog) text += `\n[fnbox: log truncated, ${call.droppedLog} bytes dropped]\n`;
    return text;
  }

  private appendLog(call: ActiveCall, chunk: Buffer): void {
    const kept = chunk.subarray(0, Math.max(this.config.maxLogBytes - call.logBytes, 0));
    if (kept.length) call.logs.push(kept);
    call.logBytes += kept.length;
    call.droppedLog += chunk.length - kept.length;
  }

  /**
   * Handles at most FRAMES_PER_TURN frames, then lets the event loop turn
   * before the next ones (the channel paused meanwhile): a burst of small
   * frames, a flood or a chatty function, must not hold the gateway while
   * the other tenants' sockets wait. A call sends one or two.
   */
  private receive(chunk?: Buffer): void {
    const channel = this.sandbox.channel!;
    // Once the protocol is broken the decoder may be mid-frame: the channel
    // flows on to its end unread. A runtime that merely exited is still
    // read: its last words (an init_error, a result) can trail its exit.
    let frames: Frame[] = [];
    if (!this.brokenChannel) {
      try {
        if (chunk) this.budget.charge(chunk.length, 0);
        frames = this.decoder.push(chunk, FRAMES_PER_TURN);
        this.budget.charge(0, frames.length);
        for (const frame of frames) this.dispatch({ header: parseRuntimeHeader(frame.header), body: frame.body });
      } catch (error) {
        this.channelBroken(error);
        frames = [];
      }
    }
    if (frames.length === FRAMES_PER_TURN && !this.brokenChannel) {
      channel.pause();
      setImmediate(() => this.receive());
    } else if (!chunk) {
      channel.resume(); // the backlog a burst left is handled
    }
  }

  /**
   * The call fails and the sandbox goes: its runtime sent what the protocol
   * does not allow (the function shares that process and can write to the
   * channel too), or handling a frame failed here. Never a crash of the host.
   */
  private channelBroken(error: unknown): void {
    let failure: FnboxError;
    if (error instanceof FrameTooLargeError && error.part === 'body') {
      failure = new FnboxError('Unhandled', `the function's response (${error.size} bytes) exceeds the limit of ${this.config.maxResponseBytes} bytes`, { details: { name: 'ResponseTooLarge' } });
    } else if (error instanceof FrameTooLargeError || error instanceof ProtocolError) {
      failure = new FnboxError('Unhandled', `the sandbox broke the channel protocol (does the function write to fd 3?): ${error.message}`, { details: { name: 'ProtocolError' } });
    } else {
      failure = new FnboxError('Internal', `handling a frame from the runtime failed: ${(error as Error).message}`, { cause: error });
    }
    this.brokenChannel = failure;
    this.active?.settle({ error: failure });
    this.retire();
  }

  private dispatch(frame: Frame<RuntimeHeader>): void {
    if (this.onFrame) {
      this.onFrame(frame);
      return;
    }
    const header = frame.header;
    const call = this.active;
    if (header.k === 'log') {
      this.remember(frame.body);
      if (call && header.id === call.id) {
        this.appendLog(call, frame.body);
        if (header.truncated) call.droppedLog += header.truncated;
      }
    } else if ((header.k === 'result' || header.k === 'error') && call && header.id === call.id) {
      call.settle({ frame });
    }
  }

  /** Output on the sandbox's own stdout/stderr (child processes, native code). */
  private strayOutput(chunk: Buffer): void {
    this.remember(chunk);
    if (this.active) this.appendLog(this.active, chunk);
    this.strayBytes += chunk.length;
    // Past what a call may log, the rest is dropped anyway: read it slowly, so
    // a child printing as fast as it can (`yes`) costs the gateway ~100 reads
    // a second, not a busy event loop. Never stopped: a writer only slows down.
    if (this.strayBytes > this.config.maxLogBytes) {
      const log = this.sandbox.log!;
      log.pause();
      setTimeout(() => log.resume(), STRAY_THROTTLE_MS);
    }
  }

  private remember(chunk: Buffer): void {
    // Joined only once twice the tail has piled up: many small chunks (a
    // chatty function, a flood) must not each cost a copy of the whole tail.
    this.recentOutput.push(chunk);
    this.recentBytes += chunk.length;
    if (this.recentBytes > 2 * TAIL_BYTES) this.trimRecent();
  }

  private trimRecent(): void {
    const joined = Buffer.concat(this.recentOutput);
    const kept = joined.subarray(Math.max(0, joined.length - TAIL_BYTES));
    this.recentOutput = [kept];
    this.recentBytes = kept.length;
  }

  /** The last lines the sandbox printed (crash reports). */
  tail(): string {
    this.trimRecent();
    return this.recentOutput[0]!.toString('utf8').split('\n').slice(-20).join('\n');
  }

  private async onSandboxExit(): Promise<void> {
    const exit = this.sandbox.exit!;
    const call = this.active;
    if (call) {
      // A result the runtime sent before it died still wins (see waitReady).
      await Promise.race([this.channelClosed, sleep(CHANNEL_DRAIN_MS)]);
      const details = { exitCode: exit.code, signal: exit.signal, stderr: this.tail() };
      if (exit.reason === 'oom') {
        call.settle({ error: new FnboxError('OutOfMemory', `the function ran out of memory (limit ${this.config.memoryMb} MiB)`, { details: { ...details, memoryMb: this.config.memoryMb } }) });
      } else if (exit.reason !== 'killed') {
        const how = exit.signal !== undefined ? `was killed by signal ${exit.signal}` : `exited with code ${exit.code}`;
        call.settle({ error: this.notePidsLimit(new FnboxError('Crashed', `the function's process ${how}`, { details }), exit.pidsMaxHits) });
      }
    }
    this.retire();
  }

  /**
   * A call that hung or died while its forks were being refused at pids.max
   * (a fork bomb, a runaway pool) says so: a bare Timeout would send its
   * author looking in the wrong place. The count is the sandbox's, and such
   * a call retires it, so it is this call's or an earlier one's on it.
   */
  private notePidsLimit(error: FnboxError, hits: number): FnboxError {
    if (hits === 0) return error;
    error.message += `; ${hits} of its forks were refused at its process limit (pidsMax ${this.config.pidsMax})`;
    Object.assign(error.details, { pidsMax: this.config.pidsMax, pidsMaxHits: hits });
    return error;
  }

  /** Out of service: destroy the sandbox and tell whoever pools us. */
  private retire(): void {
    if (this.state === 'dead') return;
    this.state = 'dead';
    void this.sandbox.destroy().finally(() => {
      for (const listener of this.goneListeners.splice(0)) listener(this);
    });
  }

  async destroy(): Promise<void> {
    this.retire();
    await this.sandbox.destroy();
  }
}
