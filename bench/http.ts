// npm run bench -- http: end-to-end POST /invoke latency and calls/s at
// concurrency 1, 8 and 64, warm and cold, per runtime, with the load
// generator (bench/lib/loadgen.mjs) in a separate process.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { progress, type BenchContext, type BenchRuntime } from './lib/context.js';
import { coldCall, deployBench, load, loadRows, LOAD_GENERATOR_NOTE, startBenchGateway } from './lib/gateway.js';
import { summarize, type ResultRow } from './lib/stats.js';

function payload(runtime: BenchRuntime, write: boolean): { path: string; body: string } {
  if (runtime === 'node' || runtime === 'python') return { path: '', body: JSON.stringify({ write }) };
  return { path: write ? '?write' : '', body: '' };
}

const BARE_SERVER = `require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('ok')); }).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;

async function startBareServer(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, ['-e', BARE_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { url: `http://127.0.0.1:${line.toString().trim()}/`, stop: () => child.kill() };
}

export async function runHttp(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { quick } = context;
  // The bench process's sandbox host stays idle meanwhile; the gateway has its own.
  const bench = await startBenchGateway('http');
  // Cold starts as they are without spare runtimes, side by side.
  const noSpares = await startBenchGateway('http-nospares', { spares: '0' });
  const { gateway } = bench;
  const results: ResultRow[] = [];
  const notes = [
    LOAD_GENERATOR_NOTE,
    'on this 2-core machine the load generator, the gateway and the sandboxes share the cores',
  ];
  const seconds = quick ? 2 : 5;
  try {
    // What this machine can do at all: a bare node:http server that only answers "ok".
    progress('http: bare node:http ceiling');
    const bare = await startBareServer();
    try {
      for (const concurrency of [1, 64]) {
        results.push(...loadRows('http', 'node-http-bare', `ceiling-c${concurrency}`, await load(bare.url, '{}', concurrency, seconds), `a node:http server that answers 200 "ok" and nothing else, in its own process, concurrency ${concurrency}`));
      }
    } finally {
      bare.stop();
    }
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
          const conditions = `concurrency ${concurrency}, maxConcurrency 4, ${write ? 'every call writes a file (fresh root each call)' : 'calls write nothing'}`;
          results.push(...loadRows('http', 'fnbox', `${label}-${runtime}-c${concurrency}`, outcome, conditions));
        }
      }
      progress(`http: ${runtime} cold`);
      const coldName = `bench-cold-${runtime}`;
      await deployBench(gateway, runtime, coldName, { minWarm: '0', idleTtlSec: '1' });
      await deployBench(noSpares.gateway, runtime, coldName, { minWarm: '0', idleTtlSec: '1' });
      const cold: number[] = [];
      for (let i = 0; i < (quick ? 3 : 10); i++) {
        const { body, path } = payload(runtime, false);
        const elapsed = await coldCall(gateway, coldName, body, path);
        if (elapsed !== undefined) cold.push(elapsed);
      }
      results.push(summarize('http', 'fnbox', `cold-${runtime}`, 'ms', cold, 'no warm sandbox for the function (the default gateway: a spare runtime of its shape is adopted), over HTTP'));
      progress(`http: ${runtime} cold, spares off`);
      const coldBoot: number[] = [];
      for (let i = 0; i < (quick ? 3 : 10); i++) {
        const { body, path } = payload(runtime, false);
        const elapsed = await coldCall(noSpares.gateway, coldName, body, path);
        if (elapsed !== undefined) coldBoot.push(elapsed);
      }
      results.push(summarize('http', 'fnbox', `cold-boot-${runtime}`, 'ms', coldBoot, 'no warm sandbox, spares off (--spares 0): boot, interpreter start, load, first call, over HTTP'));
    }
  } finally {
    await Promise.all([bench.close(), noSpares.close()]);
  }
  return { results, notes };
}
