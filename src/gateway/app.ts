// The HTTP API of DESIGN.md §4 on hono. Routes only translate: HTTP in,
// dispatcher/store calls, HTTP out; every error goes through errorResponse.
import { randomUUID } from 'node:crypto';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import PQueue from 'p-queue';
import { FnboxError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Dispatcher } from '../pool/dispatcher.js';
import type { FunctionPool } from '../pool/pool.js';
import type { Pairs } from '../runtime/protocol.js';
import type { CancelSignal, Worker } from '../runtime/worker.js';
import type { SandboxHost } from '../sandbox/index.js';
import { PROGRAM_GID, PROGRAM_UID } from '../sandbox/spec.js';
import type { FunctionStore, StoredFunction } from '../store/store.js';
import { requireToken } from './auth.js';
import type { BodyBudget } from './body-budget.js';
import { guardIdle, readBody } from './body.js';
import { deployFunction } from './deploy.js';
import { errorResponse, notFound } from './errors.js';

export interface GatewayDeps {
  store: FunctionStore;
  dispatcher: Dispatcher;
  host: SandboxHost;
  metrics: Metrics;
  log: Logger;
  adminToken?: string;
  invokeToken?: string;
  maxPayloadBytes: number;
  maxUploadBytes: number;
  /** Invocation payloads and unsent responses held at once (see body-budget.ts). */
  bodies: BodyBudget;
  bodyIdleMs: number;
  startedAt: number;
}

type Env = { Bindings: HttpBindings };

/** Headers that describe one hop, not the message: never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'content-length', 'host']);
const LOG_TAIL_BYTES = 4096;
/** Deploys unpacked and checked at once; the rest wait their turn. */
export const DEPLOYS_AT_ONCE = 2;

/** The x-fnbox-logs header: the last 4 KiB of a call's logs, base64 (as Lambda's LogResult). */
function logTail(logs: string): string {
  return Buffer.from(logs).subarray(-LOG_TAIL_BYTES).toString('base64');
}

function isValidHeader(name: string, value: string): boolean {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    return true;
  } catch {
    return false;
  }
}

function forwardedHeaders(c: Context<Env>, authEnabled: boolean): Pairs {
  const headers: Pairs = [];
  for (const [key, value] of Object.entries(c.env.incoming.headers)) {
    if (HOP_BY_HOP.has(key) || (authEnabled && key === 'authorization') || value === undefined) continue;
    for (const single of Array.isArray(value) ? value : [value]) headers.push([key, single]);
  }
  return headers;
}

function describeFunction(fn: StoredFunction, pool: FunctionPool | undefined): Record<string, unknown> {
  return {
    name: fn.name,
    runtime: fn.active.manifest.runtime,
    handler: fn.active.manifest.handler,
    version: fn.active.version,
    revision: fn.active.revision,
    deployedAt: fn.active.deployedAt,
    config: fn.active.manifest,
    versions: fn.history.map((d) => ({ version: d.version, revision: d.revision, deployedAt: d.deployedAt, active: d.revision === fn.active.revision, bytes: d.unpackedBytes, entries: d.entries })),
    pool: pool?.stats ?? { workers: 0, idle: 0, busy: 0, booting: 0, queued: 0, running: 0, lostInARow: 0 },
  };
}

/** Every live sandbox with the revision it serves (none for a spare). */
function liveSandboxes(dispatcher: Dispatcher): Array<{ worker: Worker; revision?: string }> {
  return [
    ...dispatcher.allPools().flatMap((pool) => pool.liveWorkers().map((worker) => ({ worker, revision: pool.config.revision }))),
    ...dispatcher.spares.liveWorkers().map((worker) => ({ worker })),
  ];
}

function describeSandbox({ worker, revision }: { worker: Worker; revision?: string }): Record<string, unknown> {
  const config = worker.config;
  const sandbox = worker.sandbox;
  let usage: Record<string, number> | undefined;
  try {
    usage = { ...sandbox.usage() };
  } catch {
    usage = undefined;
  }
  return {
    id: sandbox.id,
    function: worker.state === 'spare' ? null : config.functionName,
    revision: revision ?? null,
    state: worker.state,
    calls: worker.calls,
    bootMs: Math.round(worker.bootMs * 1000) / 1000,
    lastUsedAt: new Date(worker.lastUsedAt).toISOString(),
    pid: sandbox.pid,
    initPid: sandbox.initPid,
    monitorPid: sandbox.monitorPid,
    hostUid: sandbox.hostIdBase + PROGRAM_UID,
    namespaces: sandbox.namespaces(),
    cgroup: sandbox.cgroup.primaryDir,
    cgroupDirs: sandbox.cgroup.dirs,
    memoryBytes: usage?.memoryCurrentBytes,
    memoryPeakBytes: usage?.memoryPeakBytes,
    cpuUsageUs: usage?.cpuUsageUs,
    pids: usage?.pidsCurrent,
    upperDir: sandbox.upperDir,
    limits: { memoryMb: config.memoryMb, cpus: config.cpus, pidsMax: config.pidsMax, tmpMb: config.tmpMb },
    adoptedFromSpare: worker.adopted,
    enter: `nsenter --target ${sandbox.initPid} --all --setuid ${PROGRAM_UID} --setgid ${PROGRAM_GID} /bin/sh`,
  };
}

/**
 * Cancels a call when its client hangs up: what an AbortSignal does for
 * invoke(), without an EventTarget built for every request.
 */
class Hangup implements CancelSignal {
  aborted = false;
  private listeners: Array<() => void> = [];

  addEventListener(_type: 'abort', listener: () => void): void {
    this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.listeners = this.listeners.filter((l) => l !== listener);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const listener of this.listeners.splice(0)) listener();
  }
}

export function createApp(deps: GatewayDeps): Hono<Env> {
  const app = new Hono<Env>();
  // Each deploy runs an unpacker process and boots its candidate sandbox:
  // a burst of uploads takes its turn instead of all of that at once.
  const deploys = new PQueue({ concurrency: DEPLOYS_AT_ONCE });
  const admin = requireToken(deps.adminToken);
  const invoke = requireToken(deps.invokeToken, deps.adminToken);
  const authEnabled = Boolean(deps.adminToken || deps.invokeToken);

  app.onError((error, c) => errorResponse(c, error, deps.log));
  app.notFound((c) => notFound(c));

  app.get('/healthz', (c) => c.json({
    status: 'ok',
    uptimeSec: Math.round((Date.now() - deps.startedAt) / 1000),
    cgroups: deps.host.cgroups.description,
    sandboxes: deps.host.live().length,
    reservedCgroups: deps.host.reservedCgroupDirs(),
    parked: deps.host.parked(),
    functions: deps.store.list().length,
    capacity: { usedBytes: deps.dispatcher.capacity.usedBytes, limitBytes: deps.dispatcher.capacity.limitBytes },
    bodies: { usedBytes: deps.bodies.usedBytes, limitBytes: deps.bodies.limitBytes },
    spares: deps.dispatcher.spares.stats(),
  }));

  app.get('/metrics', admin, async (c) => {
    c.header('content-type', deps.metrics.registry.contentType);
    return c.body(await deps.metrics.registry.metrics());
  });

  // ---- functions ----

  app.put('/functions/:name', admin, async (c) => {
    const name = c.req.param('name');
    const declared = Number(c.req.header('content-length') ?? NaN);
    if (declared > deps.maxUploadBytes) {
      throw new FnboxError('PayloadTooLarge', `the upload of ${declared} bytes exceeds the limit of ${deps.maxUploadBytes} bytes`);
    }
    // Its upload waits unread meanwhile (the client is held back by TCP).
    const outcome = await deploys.add(() => deployFunction(deps.store, deps.dispatcher, name, guardIdle(c.env.incoming, deps.bodyIdleMs), c.req.query()));
    const pool = deps.dispatcher.poolIfAny(name);
    return c.json({ ...describeFunction(outcome.fn, pool), created: outcome.created }, outcome.created ? 201 : 200);
  });

  app.get('/functions', admin, (c) => c.json({ functions: deps.store.list().map((fn) => describeFunction(fn, deps.dispatcher.poolIfAny(fn.name))) }));

  app.get('/functions/:name', admin, (c) => {
    const fn = deps.store.require(c.req.param('name'));
    return c.json(describeFunction(fn, deps.dispatcher.poolIfAny(fn.name)));
  });

  app.get('/functions/:name/logs', admin, (c) => {
    const { name } = deps.store.require(c.req.param('name'));
    return c.json({ name, calls: deps.dispatcher.poolIfAny(name)?.recent ?? [] });
  });

  app.delete('/functions/:name', admin, async (c) => {
    const { name } = deps.store.require(c.req.param('name'));
    await deps.dispatcher.remove(name, () => deps.store.delete(name));
    await deps.metrics.forget(name);
    return c.json({ deleted: name });
  });

  // ---- invocation ----

  async function call(c: Context<Env>, name: string, url: string): Promise<Response> {
    const id = randomUUID();
    const wantLogs = c.req.query('logs') === '1' || c.req.header('x-fnbox-log-type')?.toLowerCase() === 'tail';
    // The payload's bytes held in the body budget, then the answer's.
    let held = 0;
    let sent = 0;
    try {
      deps.dispatcher.admit(name);
      try {
        held = deps.bodies.reservePayload(c.req.header('content-length'), deps.maxPayloadBytes);
      } catch (error) {
        deps.metrics.throttled.inc({ function: name, reason: 'buffered_bodies' });
        deps.metrics.invocations.inc({ function: name, outcome: 'Throttled' });
        throw error;
      }
      const body = await readBody(c.env.incoming, deps.maxPayloadBytes, deps.bodyIdleMs);
      deps.bodies.release(held - body.length);
      held = body.length;
      const hangup = new Hangup();
      c.env.outgoing.once('close', () => {
        // The client has all of the answer, or is gone.
        deps.bodies.release(sent);
        // The caller hung up before the answer: the call is cancelled.
        if (!c.env.outgoing.writableFinished) hangup.abort();
      });
      const result = await deps.dispatcher.invoke(name, { method: c.req.method, url, headers: forwardedHeaders(c, authEnabled), body }, { id, signal: hangup });
      // A plain object, not Headers: @hono/node-server hands it to writeHead as it is.
      const headers: Record<string, string | string[]> = {};
      for (const [key, value] of result.headers) {
        const lower = key.toLowerCase();
        if (HOP_BY_HOP.has(lower) || lower.startsWith('x-fnbox-')) continue;
        if (!isValidHeader(lower, value)) throw new FnboxError('Unhandled', `the function returned an invalid response header ${JSON.stringify(key)}`, { details: { name: 'InvalidResponseHeader' } });
        const previous = headers[lower];
        headers[lower] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
      }
      headers['x-fnbox-invocation-id'] = id;
      headers['x-fnbox-duration-ms'] = result.receipt.wallMs.toFixed(3);
      headers['x-fnbox-cold-start'] = String(result.coldStart);
      headers['x-fnbox-cpu-ms'] = result.receipt.cpuMs.toFixed(3);
      headers['x-fnbox-memory-peak-bytes'] = String(result.receipt.memoryPeakBytes);
      headers['x-fnbox-queue-ms'] = result.queueMs.toFixed(3);
      if (wantLogs) headers['x-fnbox-logs'] = logTail(result.logs);
      const status = Number.isInteger(result.status) && result.status >= 200 && result.status <= 599 ? result.status : 502;
      const nullBody = status === 204 || status === 304 || c.req.method === 'HEAD';
      // Held until the client has all of it: a client that does not read
      // keeps it in this process. One already gone (a call that ran on after
      // its caller hung up) takes nothing; its 'close' has come and gone.
      if (!nullBody && !hangup.aborted) {
        sent = result.body.length;
        deps.bodies.hold(sent);
      }
      return new Response(nullBody ? null : (result.body as unknown as BodyInit), { status, headers: headers as unknown as HeadersInit });
    } catch (error) {
      c.header('x-fnbox-invocation-id', id);
      if (error instanceof FnboxError) {
        error.details.invocationId = id;
        if (wantLogs && typeof error.details.logs === 'string') c.header('x-fnbox-logs', logTail(error.details.logs));
      }
      return errorResponse(c, error, deps.log);
    } finally {
      deps.bodies.release(held);
    }
  }

  app.post('/invoke/:name', invoke, (c) => {
    const url = new URL(c.req.url);
    return call(c, c.req.param('name'), url.href);
  });

  // The whole HTTP request, for Workers-style fetch handlers: the function sees its own path.
  app.all('/fn/:name/*', invoke, (c) => {
    const name = c.req.param('name');
    const url = new URL(c.req.url);
    const prefix = `/fn/${name}`;
    url.pathname = url.pathname.slice(prefix.length) || '/';
    return call(c, name, url.href);
  });
  app.all('/fn/:name', invoke, (c) => {
    const url = new URL(c.req.url);
    url.pathname = '/';
    return call(c, c.req.param('name'), url.href);
  });

  // ---- introspection ----

  app.get('/sandboxes', admin, (c) => c.json({ sandboxes: liveSandboxes(deps.dispatcher).map(describeSandbox) }));

  app.get('/sandboxes/:id', admin, (c) => {
    const found = liveSandboxes(deps.dispatcher).find(({ worker }) => worker.sandbox.id === c.req.param('id'));
    if (!found) throw new FnboxError('NotFound', `no live sandbox ${c.req.param('id')}`);
    return c.json(describeSandbox(found));
  });

  return app;
}
