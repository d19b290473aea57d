// npm run bench -- http: end-to-end POST /invoke latency and calls/s at
// concurrency 1, 8 and 64, warm and cold, per runtime, with the load
// generator (bench/lib/loadgen.mjs) in a separate process.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../src/config.js';
import { deployFunction } from '../src/gateway/deploy.js';
import { startGateway, type Gateway } from '../src/gateway/server.js';
import { silentLogger } from '../src/log.js';
import { PROJECT_ROOT } from '../src/sandbox/index.js';
import { packDirectory } from '../src/store/pack.js';
import { BENCH_FUNCTIONS, BENCH_HANDLERS, progress, type BenchContext, type BenchRuntime } from './lib/context.js';
import { summarize, type ResultRow } from './lib/stats.js';

const LOADGEN = join(PROJECT_ROOT, 'bench', 'lib', 'loadgen.mjs');

interface LoadResult {
  latenciesMs: number[];
  statuses: Record<string, number>;
  seconds: number;
}

function load(url: string, body: string, concurrency: number, seconds: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [LOADGEN, JSON.stringify({ url, body, concurrency, seconds, warmupSeconds: 1 })], { maxBuffer: 1 << 30 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(JSON.parse(stdout) as LoadResult);
    });
  });
}

function payload(runtime: BenchRuntime, write: boolean): { path: string; body: string } {
  if (runtime === 'node' || runtime === 'python') return { path: '', body: JSON.stringify({ write }) };
  return { path: write ? '?write' : '', body: '' };
}

async function deploy(gateway: Gateway, runtime: BenchRuntime, name: string, query: Record<string, string>): Promise<void> {
  const kind = runtime === 'node-workers' ? 'node' : runtime;
  const tarball = await packDirectory(join(BENCH_FUNCTIONS, kind, 'code'));
  await deployFunction(gateway.deps.store, gateway.deps.dispatcher, name, Readable.from([tarball]), { runtime: kind, handler: BENCH_HANDLERS[runtime], ...query });
}

export async function runHttp(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { quick } = context;
  const stateDir = join(PROJECT_ROOT, '.fnbox', 'bench-http-state');
  rmSync(stateDir, { recursive: true, force: true });
  // The bench process's sandbox host stays idle meanwhile; the gateway has its own.
  const gateway = await startGateway(parseConfig({ port: '0', stateDir, imagesDir: join(PROJECT_ROOT, '.fnbox', 'images'), logLevel: 'silent', queueWaitMs: '30000' }, {}), silentLogger);
  const results: ResultRow[] = [];
  const notes = [
    'load generator: bench/lib/loadgen.mjs in its own process, closed loop over keep-alive connections, 1 s warm-up discarded',
    'on this 2-core machine the load generator, the gateway and the sandboxes share the cores',
  ];
  const seconds = quick ? 2 : 5;
  try {
    const runtimes: BenchRuntime[] = quick ? ['node', 'python'] : ['node', 'node-workers', 'python', 'exec'];
    for (const runtime of runtimes) {
      const name = `bench-${runtime}`;
      await deploy(gateway, runtime, name, { minWarm: '2', maxConcurrency: '4', queueMax: '1000' });
      await sleep(500);
      const variants: Array<[string, boolean]> = runtime === 'node' ? [['warm', false], ['warm-write', true]] : [['warm', false]];
      for (const [label, write] of variants) {
        for (const concurrency of [1, 8, 64]) {
          progress(`http: ${runtime} ${label} c=${concurrency}`);
          const { path, body } = payload(runtime, write);
          const outcome = await load(`${gateway.url}/invoke/${name}${path}`, body, concurrency, seconds);
          const failed = Object.entries(outcome.statuses).filter(([status]) => status !== '200');
          const conditions = `concurrency ${concurrency}, maxConcurrency 4, ${write ? 'every call writes a file (fresh root each call)' : 'calls write nothing'}${failed.length ? `; non-200: ${JSON.stringify(Object.fromEntries(failed))}` : ''}`;
          results.push(summarize('http', 'fnbox', `${label}-${runtime}-c${concurrency}`, 'ms', outcome.latenciesMs, conditions));
          const rate = Math.round(outcome.latenciesMs.length / outcome.seconds);
          results.push({ bench: 'http', system: 'fnbox', metric: `${label}-${runtime}-c${concurrency}-throughput`, unit: 'calls/s', n: outcome.latenciesMs.length, p50: rate, p90: rate, p99: rate, mean: rate, conditions });
        }
      }
      progress(`http: ${runtime} cold`);
      const coldName = `bench-cold-${runtime}`;
      await deploy(gateway, runtime, coldName, { minWarm: '0', idleTtlSec: '1' });
      const cold: number[] = [];
      for (let i = 0; i < (quick ? 3 : 10); i++) {
        // Wait for the idle sandbox to be scaled away: the next call boots one.
        for (let j = 0; j < 100 && (gateway.deps.dispatcher.poolIfAny(coldName)?.stats.workers ?? 0) > 0; j++) await sleep(100);
        const { body, path } = payload(runtime, false);
        const started = performance.now();
        const response = await fetch(`${gateway.url}/invoke/${coldName}${path}`, { method: 'POST', body });
        await response.arrayBuffer();
        if (response.headers.get('x-fnbox-cold-start') === 'true') cold.push(performance.now() - started);
      }
      results.push(summarize('http', 'fnbox', `cold-${runtime}`, 'ms', cold, 'no warm sandbox: boot, load, first call, over HTTP'));
    }
  } finally {
    await gateway.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
  return { results, notes };
}
