// The gateway's side of the C launcher. One long-lived launcher process
// (the zygote) forks a monitor per sandbox; each monitor connects back to
// our unix socket with three streams (control, the program's channel, its
// logs). A fork costs ~0.1 ms where a Node spawn costs ~2 ms, which is most
// of a sandbox boot.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FnboxError } from '../errors.js';
import { programArgs, specToLauncherArgs, type SandboxSpec } from './spec.js';

/** What the launcher reports, one JSON object per line. */
export type LauncherEvent =
  | { event: 'started'; pid: number; monitor: number; upper_fd: number; t0: number; us: number }
  | { event: 'parked'; pid: number; monitor: number; upper_fd: number }
  | { event: 'error'; phase: number; step: string; errno: number; message: string; id?: string }
  | { event: 'reset'; ok: true; stale: number; t0: number; us: number }
  | { event: 'reset'; ok: false; quiet: boolean; step: string; errno: number; message: string }
  | { event: 'sync' }
  | { event: 'exit'; code?: number; signal?: number };

/** Launcher exit codes per phase (enum in fnbox-launcher.c). */
export const LAUNCHER_PHASES: Record<number, string> = {
  110: 'arguments',
  111: 'root layer',
  112: 'clone',
  113: 'id maps and cgroups',
  114: 'filesystem setup',
  115: 'privilege drop',
  116: 'exec',
  117: 'init',
};

export interface LaunchedSandbox {
  id: string;
  monitorPid: number;
  initPid: number;
  upperFd: number;
  /** µs in the monitor until the program was exec'd: from its start, or from the start command when parked. */
  bootUs: number;
  /** When the monitor began (or, parked, took the start command), CLOCK_MONOTONIC in µs (the clock of `process.hrtime`). */
  monitorStartedUs: number;
  /** Booted ahead (park()) and started by start(). */
  parked: boolean;
  control: net.Socket;
  channel?: net.Socket;
  log?: net.Socket;
  events: MonitorEvents;
}

/** A sandbox booted ahead (`--park`): whole but for its program, which start() runs. */
export interface ParkedSandbox {
  id: string;
  monitorPid: number;
  initPid: number;
  /** Settles when the monitor is gone: the parked sandbox died or was let go. */
  gone: Promise<void>;
}

/**
 * Events of one monitor after it started. Buffered until someone listens:
 * a short program's "exit" can arrive in the same read as "started".
 */
export class MonitorEvents {
  private backlog: LauncherEvent[] = [];
  private onEvent?: (event: LauncherEvent) => void;
  private onClose?: () => void;
  private closed = false;
  private markGone!: () => void;
  /** Settles when the monitor's control stream is closed. */
  readonly gone = new Promise<void>((resolve) => (this.markGone = resolve));

  push(event: LauncherEvent): void {
    if (this.onEvent) this.onEvent(event);
    else this.backlog.push(event);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.markGone();
    this.onClose?.();
  }

  listen(onEvent: (event: LauncherEvent) => void, onClose: () => void): void {
    this.onEvent = onEvent;
    this.onClose = onClose;
    for (const event of this.backlog.splice(0)) onEvent(event);
    if (this.closed) onClose();
  }
}

interface PendingBoot {
  spec: SandboxSpec;
  control?: net.Socket;
  channel?: net.Socket;
  log?: net.Socket;
  started?: Extract<LauncherEvent, { event: 'started' }>;
  /** Parked once, now started by start(). */
  wasParked?: boolean;
  /** A park() waits for this instead of "started". */
  parking?: { parked?: Extract<LauncherEvent, { event: 'parked' }>; resolve: (sandbox: ParkedSandbox) => void };
  events: MonitorEvents;
  resolve: (sandbox: LaunchedSandbox) => void;
  reject: (error: FnboxError) => void;
  timer: NodeJS.Timeout;
  monitorPid?: number;
}

/** Network namespaces the zygote keeps ready (made while idle): most of a boot's cost, paid ahead. */
export const NETNS_POOL = 16;

export interface LauncherOptions {
  netnsPool?: number;
  binary: string;
  /** Private directory for the socket and the root attach point. */
  runDir: string;
  bootTimeoutMs?: number;
}

export function launcherError(event: Extract<LauncherEvent, { event: 'error' }>, id: string): FnboxError {
  const phase = LAUNCHER_PHASES[event.phase] ?? 'unknown phase';
  return new FnboxError('SandboxError', `sandbox ${id}: ${phase} failed at step ${event.step}: ${event.message}`, {
    details: { step: event.step, errno: event.errno, phase: event.phase },
  });
}

/** Splits a byte stream into JSON lines. */
function onJsonLines(socket: net.Socket, handle: (value: unknown) => void): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (!line.trim()) continue;
      try {
        handle(JSON.parse(line));
      } catch {
        handle({ event: 'error', phase: 0, step: 'protocol', errno: 0, message: `unreadable launcher line: ${line.slice(0, 200)}` });
      }
    }
  });
}

export class Launcher {
  readonly socketPath: string;
  readonly rootMountpoint: string;
  readonly scratchDir: string;
  private zygote?: ChildProcessWithoutNullStreams;

  /** The zygote's host PID (monitors are its children). */
  get zygotePid(): number | undefined {
    return this.zygote?.pid;
  }
  private readonly pending = new Map<string, PendingBoot>();
  /** Parked sandboxes not started yet, by id. */
  private readonly parked = new Map<string, PendingBoot>();
  private closed = false;

  private constructor(private readonly options: LauncherOptions, private readonly server: net.Server, socketPath: string) {
    this.socketPath = socketPath;
    this.rootMountpoint = join(options.runDir, 'root');
    this.scratchDir = join(options.runDir, 'layers');
  }

  static async start(options: LauncherOptions): Promise<Launcher> {
    // 0711: the sandbox's init (an unprivileged host uid by then) must reach
    // the attach point below; nobody but root may list or connect.
    mkdirSync(options.runDir, { recursive: true, mode: 0o711 });
    chmodSync(options.runDir, 0o711);
    mkdirSync(join(options.runDir, 'root'), { recursive: true });
    mkdirSync(join(options.runDir, 'layers'), { recursive: true, mode: 0o700 });
    let socketPath = join(options.runDir, 'launcher.sock');
    // sun_path holds 107 bytes; a deep state dir gets a short private path.
    if (Buffer.byteLength(socketPath) > 100) {
      const dir = join(tmpdir(), `fnbox-${createHash('sha256').update(options.runDir).digest('hex').slice(0, 16)}`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      socketPath = join(dir, 'launcher.sock');
    }
    rmSync(socketPath, { force: true });
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    chmodSync(socketPath, 0o600);
    const launcher = new Launcher(options, server, socketPath);
    server.on('connection', (socket) => launcher.accept(socket));
    launcher.startZygote();
    return launcher;
  }

  private startZygote(): void {
    const zygote = spawn(this.options.binary, ['--server', '--netns-pool', String(this.options.netnsPool ?? NETNS_POOL)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.zygote = zygote;
    zygote.stdin.on('error', () => {});
    // Monitors that fail before they connect report here, tagged with their id.
    onJsonLines(zygote.stderr as unknown as net.Socket, (value) => {
      const event = value as Extract<LauncherEvent, { event: 'error' }>;
      const pending = event.id ? this.pending.get(event.id) : undefined;
      if (pending && event.id) this.fail(event.id, launcherError(event, event.id));
    });
    zygote.on('exit', (code, signal) => {
      if (this.zygote === zygote) this.zygote = undefined;
      const error = new FnboxError('SandboxError', `the launcher exited (${signal ?? `code ${code}`})`);
      for (const id of [...this.pending.keys()]) this.fail(id, error);
    });
    zygote.on('error', (error) => {
      for (const id of [...this.pending.keys()]) this.fail(id, new FnboxError('SandboxError', `cannot run the launcher ${this.options.binary}: ${error.message}`, { cause: error }));
    });
  }

  /** Boots a sandbox: resolves once its program has been exec'd. */
  boot(spec: SandboxSpec): Promise<LaunchedSandbox> {
    return new Promise<LaunchedSandbox>((resolve, reject) => this.send(spec, false, { resolve, reject }));
  }

  /**
   * Boots a sandbox as far as its program's execve (`--park`): resolves
   * once it waits for start(). Its id, ids, cgroup and everything it is
   * built from are `spec`'s; what it runs comes with start().
   */
  park(spec: SandboxSpec): Promise<ParkedSandbox> {
    return new Promise<ParkedSandbox>((resolve, reject) => this.send(spec, true, { resolve: () => {}, reject, parking: { resolve } }));
  }

  /**
   * Runs `spec`'s program in the parked sandbox of the same id: resolves
   * once it has been exec'd, as boot() does. `spec` must build what the
   * parked one did (parkedShape()); only its hostname, program,
   * environment and working directory are sent.
   */
  start(spec: SandboxSpec): Promise<LaunchedSandbox> {
    const pending = this.parked.get(spec.id);
    if (!pending?.control) return Promise.reject(new FnboxError('SandboxError', `sandbox ${spec.id} is not parked`));
    this.parked.delete(spec.id);
    const body = Buffer.from(`${programArgs(spec).join('\0')}\0`);
    return new Promise<LaunchedSandbox>((resolve, reject) => {
      this.track(spec.id, Object.assign(pending, { spec, resolve, reject, parking: undefined, wasParked: true }));
      pending.control!.write(Buffer.concat([Buffer.from(`start ${spec.hostname} ${body.length}\n`), body]));
    });
  }

  /** Lets a parked sandbox go (its monitor kills it when its control stream closes). */
  unpark(id: string): void {
    const pending = this.parked.get(id);
    this.parked.delete(id);
    for (const socket of [pending?.control, pending?.channel, pending?.log]) socket?.destroy();
  }

  private send(spec: SandboxSpec, park: boolean, waiter: Pick<PendingBoot, 'resolve' | 'reject' | 'parking'>): void {
    if (this.closed) return waiter.reject(new FnboxError('Unavailable', 'the launcher is shut down'));
    if (this.pending.has(spec.id) || this.parked.has(spec.id)) return waiter.reject(new FnboxError('SandboxError', `sandbox ${spec.id} is already booting`));
    if (!this.zygote) this.startZygote();
    const args = specToLauncherArgs(spec, this.socketPath, { park });
    const body = Buffer.from(`${args.join('\0')}\0`);
    const frame = Buffer.allocUnsafe(4 + body.length);
    frame.writeUInt32LE(body.length, 0);
    body.copy(frame, 4);
    this.track(spec.id, { spec, events: new MonitorEvents(), ...waiter, timer: undefined as unknown as NodeJS.Timeout });
    this.zygote!.stdin.write(frame);
  }

  /** Waits (up to the boot timeout) for `pending` to start, or to park. */
  private track(id: string, pending: PendingBoot): void {
    const timeoutMs = this.options.bootTimeoutMs ?? 10_000;
    pending.timer = setTimeout(() => this.fail(id, new FnboxError('SandboxError', `sandbox ${id} did not start within ${timeoutMs} ms`)), timeoutMs);
    this.pending.set(id, pending);
  }

  private accept(socket: net.Socket): void {
    let hello = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      hello = Buffer.concat([hello, chunk]);
      const newline = hello.indexOf(10);
      if (newline < 0) {
        if (hello.length > 256) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      const rest = hello.subarray(newline + 1);
      if (rest.length) socket.unshift(rest);
      const [magic, id = '', role = '', pid = ''] = hello.subarray(0, newline).toString('utf8').split(' ');
      const pending = this.pending.get(id);
      if (magic !== 'fnbox-hello' || !pending) {
        socket.destroy();
        return;
      }
      pending.monitorPid = Number(pid);
      if (role === 'control') this.attachControl(id, pending, socket);
      else if (role === 'channel') pending.channel = socket;
      else if (role === 'log') pending.log = socket;
      else socket.destroy();
      this.maybeReady(id);
    };
    socket.on('data', onData);
    socket.on('error', () => {});
  }

  private attachControl(id: string, pending: PendingBoot, socket: net.Socket): void {
    pending.control = socket;
    onJsonLines(socket, (value) => {
      const event = value as LauncherEvent;
      const booting = this.pending.get(id);
      if (booting === pending) {
        if (event.event === 'started' && !pending.parking) {
          pending.started = event;
          this.maybeReady(id);
        } else if (event.event === 'parked' && pending.parking) {
          pending.parking.parked = event;
          this.maybeReady(id);
        } else if (event.event === 'error') this.fail(id, launcherError(event, id));
        else if (event.event === 'started' || event.event === 'parked') {
          // A park answered "started": its program died before it could wait.
          this.fail(id, new FnboxError('SandboxError', `sandbox ${id}: the monitor answered "${event.event}" to a ${pending.parking ? 'park' : 'boot'}`));
        } else pending.events.push(event);
      } else pending.events.push(event);
    });
    socket.on('close', () => {
      pending.events.close();
      if (this.pending.get(id) !== pending) return;
      if (!pending.started) {
        this.fail(id, new FnboxError('SandboxError', `sandbox ${id}: the monitor closed its control stream before the program started`));
        return;
      }
      // A program that ran and exited at once: its monitor is gone, but the
      // channel and log connections it made before the start may still sit
      // in the accept queue. Give them a moment before calling it a failure.
      setTimeout(() => {
        if (this.pending.get(id) === pending) this.fail(id, new FnboxError('SandboxError', `sandbox ${id}: the monitor's streams never arrived`));
      }, 1000).unref();
    });
    socket.resume();
  }

  private maybeReady(id: string): void {
    const pending = this.pending.get(id);
    if (!pending?.control || !(pending.parking ? pending.parking.parked : pending.started)) return;
    if (pending.spec.channelFd !== undefined && !pending.channel) return;
    if (pending.spec.captureLogs && !pending.log) return;
    clearTimeout(pending.timer);
    this.pending.delete(id);
    const { parking, started, control } = pending;
    if (parking?.parked) {
      this.parked.set(id, pending);
      parking.resolve({ id, monitorPid: parking.parked.monitor, initPid: parking.parked.pid, gone: pending.events.gone });
    } else if (started) {
      pending.resolve({
        id,
        monitorPid: started.monitor,
        initPid: started.pid,
        upperFd: started.upper_fd,
        bootUs: started.us,
        monitorStartedUs: started.t0,
        parked: pending.wasParked === true,
        control,
        channel: pending.channel,
        log: pending.log,
        events: pending.events,
      });
    }
  }

  private fail(id: string, error: FnboxError): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.pending.delete(id);
    for (const socket of [pending.control, pending.channel, pending.log]) socket?.destroy();
    // A monitor we gave up on must not live on: closing its control stream kills it,
    // and a SIGKILL covers one that never connected its control stream.
    if (pending.monitorPid) {
      try {
        process.kill(pending.monitorPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    pending.reject(error);
  }

  /** Stops the zygote and the socket; monitors die with the zygote. */
  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.pending.keys()]) this.fail(id, new FnboxError('Unavailable', 'the launcher is shutting down'));
    for (const id of [...this.parked.keys()]) this.unpark(id);
    const zygote = this.zygote;
    if (zygote && zygote.exitCode === null && zygote.signalCode === null) {
      const exited = new Promise((resolve) => zygote.once('exit', resolve));
      zygote.stdin.end();
      await exited;
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.socketPath, { force: true });
  }
}
