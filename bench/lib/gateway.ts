// A gateway of the bench's own, for the end-to-end scenarios, and the
// closed-loop load generator (bench/lib/loadgen.mjs) in its own process.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config.js';
import { deployFunction } from '../../src/gateway/deploy.js';
import { startGateway, type Gateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/log.js';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { packDirectory } from '../../src/store/pack.js';
import { BENCH_FUNCTIONS, BENCH_HANDLERS, type BenchRuntime } from './context.js';

const LOADGEN = join(PROJECT_ROOT, 'bench', 'lib', 'loadgen.mjs');

export interface LoadResult {
  latenciesMs: number[];
  statuses: Record<string, number>;
  seconds: number;
}

export function load(url: string, body: string, concurrency: number, seconds: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [LOADGEN, JSON.stringify({ url, body, concurrency, seconds, warmupSeconds: 1 })], { maxBuffer: 1 << 30 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(JSON.parse(stdout) as LoadResult);
    });
  });
}

export interface BenchGateway {
  gateway: Gateway;
  close(): Promise<void>;
}

export async function startBenchGateway(name: string): Promise<BenchGateway> {
  const stateDir = join(PROJECT_ROOT, '.fnbox', `bench-${name}-state`);
  rmSync(stateDir, { recursive: true, force: true });
  const gateway = await startGateway(parseConfig({ port: '0', stateDir, imagesDir: join(PROJECT_ROOT, '.fnbox', 'images'), logLevel: 'silent', queueWaitMs: '60000' }, {}), silentLogger);
  return {
    gateway,
    close: async () => {
      await gateway.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export async function deployBench(gateway: Gateway, runtime: BenchRuntime, name: string, query: Record<string, string>): Promise<void> {
  const kind = runtime === 'node-workers' ? 'node' : runtime;
  const tarball = await packDirectory(join(BENCH_FUNCTIONS, kind, 'code'));
  await deployFunction(gateway.deps.store, gateway.deps.dispatcher, name, Readable.from([tarball]), { runtime: kind, handler: BENCH_HANDLERS[runtime], ...query });
}

/** One call with nothing warm: waits for the pool to scale to zero first (idleTtlSec 1). */
export async function coldCall(gateway: Gateway, name: string, body: string, path = ''): Promise<number | undefined> {
  for (let i = 0; i < 100 && (gateway.deps.dispatcher.poolIfAny(name)?.stats.workers ?? 0) > 0; i++) await sleep(100);
  const started = performance.now();
  const response = await fetch(`${gateway.url}/invoke/${name}${path}`, { method: 'POST', body });
  await response.arrayBuffer();
  return response.headers.get('x-fnbox-cold-start') === 'true' ? performance.now() - started : undefined;
}
