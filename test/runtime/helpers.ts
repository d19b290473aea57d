import { join } from 'node:path';
import { PROJECT_ROOT, type SandboxHost } from '../../src/sandbox/index.js';
import type { RuntimeKind } from '../../src/runtime/kinds.js';
import { DEFAULT_WORKER_LIMITS, Worker, type InvokeRequest, type WorkerConfig } from '../../src/runtime/worker.js';
import { imageStore } from '../support/env.js';

export const FIXTURES = join(PROJECT_ROOT, 'test', 'fixtures', 'functions');

export function startWorker(host: SandboxHost, fixture: string, runtime: RuntimeKind, handler: string, overrides: Partial<WorkerConfig> = {}): Promise<Worker> {
  return Worker.start(host, imageStore(), {
    ...DEFAULT_WORKER_LIMITS,
    functionName: fixture,
    runtime,
    handler,
    codeLayer: join(FIXTURES, fixture),
    env: {},
    timeoutMs: 5000,
    ...overrides,
  });
}

export function request(path: string, body: Buffer | string = '', headers: Array<[string, string]> = [], method = 'POST'): InvokeRequest {
  return { method, url: `http://fnbox.local${path}`, headers, body: typeof body === 'string' ? Buffer.from(body) : body };
}

export function json(body: Buffer): unknown {
  return JSON.parse(body.toString('utf8'));
}
