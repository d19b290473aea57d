// npm run bench -- compare: the same node function, the same root
// filesystem, the same limits, fnbox against Docker, interleaved:
//   cold   fnbox cold start      vs docker run --rm of the function
//   warm   fnbox warm pool (HTTP) vs docker exec into a warm container
//                                 vs a warm container's own HTTP server (OpenFaaS watchdog style)
//   load   concurrency 1, 8, 64 on both warm HTTP paths: latency and calls/s
import { execFileSync } from 'node:child_process';
import { progress, type BenchContext } from './lib/context.js';
import { buildFunctionImage, dockerOk, FUNCTION_IMAGE, removeContainers, removeImage, startContainer } from './lib/docker.js';
import { coldCall, deployBench, load, loadRows, LOAD_GENERATOR_NOTE, startBenchGateway } from './lib/gateway.js';
import { dockerReady } from './lib/peers.js';
import { summarize, type ResultRow } from './lib/stats.js';

const LIMITS = ['--memory', '128m', '--memory-swap', '128m', '--cpus', '1', '--pids-limit', '64'];
const EVENT = '{"write":false}';

function timed(run: () => boolean): number | undefined {
  const started = performance.now();
  return run() ? performance.now() - started : undefined;
}

export async function runCompare(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { images, quick } = context;
  const results: ResultRow[] = [];
  const notes = [
    'same function (bench/functions/node), same node rootfs (the docker image is `docker import`ed from fnbox\'s node image), same limits (128 MiB, 1 CPU, 64 pids)',
    'docker run and docker exec are timed around the docker CLI; fnbox and the warm container\'s HTTP server through the same load generator process',
    LOAD_GENERATOR_NOTE,
  ];
  // Spares off: docker run starts node for every cold call, so fnbox does too
  // here (cold starts that adopt a spare runtime: the invoke and http benches).
  const bench = await startBenchGateway('compare', { spares: '0' });
  const { gateway } = bench;
  const docker = dockerReady();
  if (!docker) notes.push('docker: not measured — no running Docker engine (npm run bench -- --setup installs and starts one)');
  const containers: string[] = [];
  try {
    await deployBench(gateway, 'node', 'warm', { minWarm: '2', maxConcurrency: '2', queueMax: '10000' });
    await deployBench(gateway, 'node', 'cold', { minWarm: '0', idleTtlSec: '1' });
    if (docker) {
      progress('compare: building the docker image of the function');
      buildFunctionImage(images.getSync('node').rootfs);
      startContainer('fnbox-bench-exec', ['--network', 'none', ...LIMITS, FUNCTION_IMAGE, '/bin/sleep', '100000']);
      startContainer('fnbox-bench-http', ['-p', '127.0.0.1:18099:8080', ...LIMITS, FUNCTION_IMAGE, '/usr/bin/node', '/opt/bench/server.mjs']);
      containers.push('fnbox-bench-exec', 'fnbox-bench-http');
      for (let i = 0; i < 50 && !(await fetch('http://127.0.0.1:18099/', { method: 'POST', body: EVENT }).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 100));
    }

    // Cold, interleaved.
    const cold = { fnbox: [] as number[], docker: [] as number[] };
    const coldRuns = quick ? 4 : 15;
    for (let i = 0; i < coldRuns; i++) {
      progress(`compare: cold ${i + 1}/${coldRuns}`);
      const fnbox = await coldCall(gateway, 'cold', EVENT);
      if (fnbox !== undefined) cold.fnbox.push(fnbox);
      if (docker) {
        const run = timed(() => dockerOk(['run', '--rm', '-i', '--network', 'none', ...LIMITS, FUNCTION_IMAGE, '/usr/bin/node', '/opt/bench/once.mjs'], EVENT));
        if (run !== undefined) cold.docker.push(run);
      }
    }
    results.push(summarize('cold-invoke', 'fnbox', 'cold', 'ms', cold.fnbox, 'no warm sandbox, spares off: boot, node start, load, call; over HTTP'));
    if (docker) results.push(summarize('cold-invoke', 'docker-run', 'cold', 'ms', cold.docker, 'docker run --rm --network none: container, node start, load, call'));

    // Warm, single call: docker exec spawns node each time, so it gets fewer runs.
    if (docker) {
      progress('compare: docker exec');
      const exec: number[] = [];
      for (let i = 0; i < (quick ? 5 : 20); i++) {
        const run = timed(() => dockerOk(['exec', '-i', 'fnbox-bench-exec', '/usr/bin/node', '/opt/bench/once.mjs'], EVENT));
        if (run !== undefined) exec.push(run);
      }
      results.push(summarize('warm-invoke', 'docker-exec', 'warm', 'ms', exec, 'docker exec into a warm container (a node process per call)'));
    }

    // Warm under load, interleaved per concurrency.
    const seconds = quick ? 2 : 5;
    for (const concurrency of [1, 8, 64]) {
      const targets: Array<[string, string]> = [['fnbox', `${gateway.url}/invoke/warm`]];
      if (docker) targets.push(['docker-http', 'http://127.0.0.1:18099/']);
      for (const [system, url] of targets) {
        progress(`compare: ${system} c=${concurrency}`);
        const outcome = await load(url, EVENT, concurrency, seconds);
        const conditions = system === 'fnbox'
          ? `POST /invoke through the gateway, 2 warm sandboxes (one per core), concurrency ${concurrency}`
          : `one warm container, node http server, port published on 127.0.0.1, concurrency ${concurrency}`;
        const [latency, rate] = loadRows('throughput', system, `latency-c${concurrency}`, outcome, conditions);
        if (concurrency === 1) results.push({ ...latency!, bench: 'warm-invoke', metric: 'warm' });
        results.push(latency!, { ...rate!, metric: `calls-per-s-c${concurrency}` });
      }
    }
  } finally {
    removeContainers(containers);
    if (docker) removeImage(FUNCTION_IMAGE);
    await bench.close();
  }
  return { results, notes };
}

export function dockerVersion(): string | null {
  try {
    return execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
