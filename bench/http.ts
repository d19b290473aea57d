// npm run bench -- http: end-to-end POST /invoke latency and calls/s at
// concurrency 1, 8 and 64, warm and cold, per runtime, with the load
// generator (bench/lib/loadgen.mjs) in a separate process.
import { setTimeout as sleep } from 'node:timers/promises';
import { progress, type BenchContext, type BenchRuntime } from './lib/context.js';
import { coldCall, deployBench, load, startBenchGateway } from './lib/gateway.js';
import { summarize, type ResultRow } from './lib/stats.js';

function payload(runtime: BenchRuntime, write: boolean): { path: string; body: string } {
  if (runtime === 'node' || runtime === 'python') return { path: '', body: JSON.stringify({ write }) };
  return { path: write ? '?write' : '', body: '' };
}

export async function runHttp(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { quick } = context;
  // The bench process's sandbox host stays idle meanwhile; the gateway has its own.
  const bench = await startBenchGateway('http');
  const { gateway } = bench;
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
      await deployBench(gateway, runtime, name, { minWarm: '2', maxConcurrency: '4', queueMax: '1000' });
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
      await deployBench(gateway, runtime, coldName, { minWarm: '0', idleTtlSec: '1' });
      const cold: number[] = [];
      for (let i = 0; i < (quick ? 3 : 10); i++) {
        const { body, path } = payload(runtime, false);
        const elapsed = await coldCall(gateway, coldName, body, path);
        if (elapsed !== undefined) cold.push(elapsed);
      }
      results.push(summarize('http', 'fnbox', `cold-${runtime}`, 'ms', cold, 'no warm sandbox: boot, load, first call, over HTTP'));
    }
  } finally {
    await bench.close();
  }
  return { results, notes };
}
