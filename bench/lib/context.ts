import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageStore } from '../../src/images/index.js';
import { DEFAULT_WORKER_LIMITS, Worker, type WorkerConfig } from '../../src/runtime/worker.js';
import { PROJECT_ROOT, type SandboxHost } from '../../src/sandbox/index.js';

export const BENCH_FUNCTIONS = join(PROJECT_ROOT, 'bench', 'functions');
export const RESULTS_DIR = join(PROJECT_ROOT, 'bench', 'results');

export interface BenchContext {
  host: SandboxHost;
  images: ImageStore;
  quick: boolean;
}

/** One progress line, rewritten in place on a terminal. */
export function progress(message: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${message}`);
  else process.stderr.write(`${message}\n`);
}

export const BENCH_HANDLERS = { node: 'index.handler', 'node-workers': 'index', python: 'main.handler', exec: 'run.sh' } as const;
export type BenchRuntime = keyof typeof BENCH_HANDLERS;

export function benchWorkerConfig(runtime: BenchRuntime): WorkerConfig {
  const kind = runtime === 'node-workers' ? 'node' : runtime;
  return {
    ...DEFAULT_WORKER_LIMITS,
    functionName: `bench-${runtime}`,
    runtime: kind,
    handler: BENCH_HANDLERS[runtime],
    codeLayer: join(BENCH_FUNCTIONS, kind),
    env: {},
  };
}

/** A warm worker running one of bench/functions/*. */
export function startBenchWorker(host: SandboxHost, images: ImageStore, runtime: BenchRuntime): Promise<Worker> {
  return Worker.start(host, images, benchWorkerConfig(runtime));
}

/** A spare runtime of the bench function's shape (src/pool/spares.ts), not yet adopted. */
export function startBenchSpare(host: SandboxHost, images: ImageStore, runtime: BenchRuntime): Promise<Worker> {
  const emptyLayer = join(host.stateDir, 'bench-spare-layer');
  mkdirSync(join(emptyLayer, 'code'), { recursive: true });
  return Worker.startSpare(host, images, benchWorkerConfig(runtime), emptyLayer);
}
