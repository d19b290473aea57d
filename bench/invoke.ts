// npm run bench -- invoke: calls through the Worker API (no HTTP), trivial
// handler, per runtime: warm latency without and with the per-call root
// reset, cold call latency, and calls/s with one sandbox per core.
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import type { InvokeRequest, Worker } from '../src/runtime/worker.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { BENCH_HANDLERS, benchWorkerConfig, progress, startBenchSpare, startBenchWorker, type BenchContext, type BenchRuntime } from './lib/context.js';
import { rateRow, summarize, type ResultRow } from './lib/stats.js';

function benchRequest(runtime: BenchRuntime, write: boolean): InvokeRequest {
  const lambda = runtime === 'node' || runtime === 'python';
  return {
    method: 'POST',
    url: `http://bench.local/${write ? '?write' : ''}`,
    headers: [['content-type', 'application/json']],
    body: Buffer.from(lambda ? JSON.stringify({ write }) : ''),
  };
}

async function timeCalls(worker: Worker, request: InvokeRequest, count: number, afterCleanUp = false): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    // afterCleanUp: the previous call's root reset is not counted (what a caller sees when the pool has a ready sandbox).
    if (afterCleanUp) await worker.whenIdle();
    const started = performance.now();
    await worker.invoke(request);
    samples.push(performance.now() - started);
  }
  return samples;
}

export async function runInvoke(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { host, images, quick } = context;
  const results: ResultRow[] = [];
  const notes = [
    'latency is host-to-host: Worker.invoke() until the result frame is back, receipt read included',
    '"with reset" calls write a file, so before the next call the sandbox gets a fresh root; back to back, the next call is sent at once and waits at the runtime\'s gate until that swap is done, inside its time',
  ];
  const warmCalls = quick ? 1000 : 5000;
  for (const runtime of Object.keys(BENCH_HANDLERS) as BenchRuntime[]) {
    progress(`invoke: ${runtime} warm`);
    const worker = await startBenchWorker(host, images, runtime);
    const calls = runtime === 'exec' ? Math.floor(warmCalls / 5) : warmCalls;
    await timeCalls(worker, benchRequest(runtime, false), 200); // warm-up
    // Interleave the two kinds in blocks so drift hits both.
    const plain: number[] = [];
    const reset: number[] = [];
    const resetCall: number[] = [];
    for (let block = 0; block < 10; block++) {
      plain.push(...(await timeCalls(worker, benchRequest(runtime, false), calls / 10)));
      await worker.invoke(benchRequest(runtime, true));
      reset.push(...(await timeCalls(worker, benchRequest(runtime, true), calls / 10)));
      resetCall.push(...(await timeCalls(worker, benchRequest(runtime, true), calls / 10, true)));
      await worker.invoke(benchRequest(runtime, false));
    }
    results.push(summarize('invoke', 'fnbox', `warm-${runtime}`, 'ms', plain, 'call writes nothing: root kept'));
    results.push(summarize('invoke', 'fnbox', `warm-reset-${runtime}`, 'ms', reset, 'back to back on one sandbox, each call writes a file: the previous call\'s root reset is inside each time (the call waits for it at the runtime\'s gate)'));
    results.push(summarize('invoke', 'fnbox', `warm-reset-call-${runtime}`, 'ms', resetCall, 'each call writes a file, on a sandbox whose reset is done (the reset runs after the answer)'));
    await worker.destroy();

    progress(`invoke: ${runtime} cold`);
    const cold: number[] = [];
    const bare: number[] = [];
    const interpreter = runtime === 'python' ? ['python3', '-S', '-c', 'pass'] : [process.execPath, '-e', '0'];
    for (let i = 0; i < (quick ? 5 : 20); i++) {
      // The interpreter alone on the host, clean environment, interleaved: the yardstick for cold starts.
      let started = performance.now();
      execFileSync(interpreter[0]!, interpreter.slice(1), { env: {}, stdio: 'ignore' });
      bare.push(performance.now() - started);
      started = performance.now();
      const fresh = await startBenchWorker(host, images, runtime);
      await fresh.invoke(benchRequest(runtime, false));
      cold.push(performance.now() - started);
      await fresh.destroy();
    }
    results.push(summarize('invoke', 'fnbox', `cold-${runtime}`, 'ms', cold, 'no warm sandbox, no spare: boot + interpreter start + load + first call'));
    progress(`invoke: ${runtime} cold from a spare`);
    const adopted: number[] = [];
    for (let i = 0; i < (quick ? 5 : 20); i++) {
      const spare = await startBenchSpare(host, images, runtime);
      await sleep(50); // a spare waits ready before the call that needs it
      const started = performance.now();
      await spare.adopt(benchWorkerConfig(runtime));
      await spare.invoke(benchRequest(runtime, false));
      adopted.push(performance.now() - started);
      await spare.destroy();
    }
    results.push(summarize('invoke', 'fnbox', `cold-spare-${runtime}`, 'ms', adopted, 'no warm sandbox, a spare runtime of the same shape ready: adopt (code layer swapped in, module loaded) + first call'));
    results.push(summarize('invoke', 'host', `bare-interpreter-${runtime}`, 'ms', bare, `\`${interpreter.join(' ')}\` on the host with an empty environment, spawned from Node, interleaved with the cold calls`));

    progress(`invoke: ${runtime} throughput`);
    const perCore = await Promise.all(cpus().map(() => startBenchWorker(host, images, runtime)));
    const seconds = quick ? 2 : 5;
    const deadline = performance.now() + seconds * 1000;
    let done = 0;
    await Promise.all(perCore.map(async (w) => {
      while (performance.now() < deadline) {
        await w.invoke(benchRequest(runtime, false));
        done++;
      }
    }));
    results.push(rateRow('invoke', 'fnbox', `throughput-${runtime}`, 'calls/s', done, seconds, `${perCore.length} sandboxes (one per core), back-to-back calls for ${seconds} s`));
    await Promise.all(perCore.map((w) => w.destroy()));
  }
  return { results, notes };
}
