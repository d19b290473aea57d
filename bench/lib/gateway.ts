// A gateway of the bench's own, for the end-to-end scenarios, and the
// closed-loop load generator in its own process: wrk when installed,
// bench/lib/loadgen.mjs otherwise.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config.js';
import { deployFunction } from '../../src/gateway/deploy.js';
import { startGateway, type Gateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/log.js';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { packDirectory } from '../../src/store/pack.js';
import { BENCH_FUNCTIONS, BENCH_HANDLERS, type BenchRuntime } from './context.js';
import { measureCpu, type CpuSplit } from './machine.js';
import { rateRow, summarize, type ResultRow } from './stats.js';

const execFileAsync = promisify(execFile);
const LOADGEN = join(PROJECT_ROOT, 'bench', 'lib', 'loadgen.mjs');

export interface LoadResult {
  n: number;
  seconds: number;
  latencyMs: { p50: number; p90: number; p99: number; mean: number };
  statuses: Record<string, number>;
  /** The machine's CPUs during the run: near 100% busy means the rate is bound by them. */
  cpu?: CpuSplit;
}

const WRK_SCRIPT = `
wrk.method = "POST"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"n":%d,"us":%d,"p50":%f,"p90":%f,"p99":%f,"mean":%f,"non2xx":%d,"socket":%d}',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    e.status, e.connect + e.read + e.write + e.timeout))
end
`;

function hasWrk(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    // wrk --version exits 1 after printing its version.
    return (error as { status?: number }).status === 1;
  }
}

const WRK = hasWrk();

// Asynchronous: the bench's gateway runs in this very process.
async function wrkRun(url: string, body: string, concurrency: number, seconds: number): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'fnbox-wrk-'));
  try {
    const script = join(dir, 'post.lua');
    writeFileSync(script, `wrk.body = ${JSON.stringify(body)}\nwrk.headers["content-type"] = "application/json"\n${WRK_SCRIPT}`);
    const { stdout: out } = await execFileAsync('wrk', ['-t1', `-c${concurrency}`, `-d${seconds}s`, '--timeout', '30s', '-s', script, url], { encoding: 'utf8' });
    const line = out.slice(out.lastIndexOf('{"n":'));
    const parsed = JSON.parse(line) as { n: number; us: number; p50: number; p90: number; p99: number; mean: number; non2xx: number; socket: number };
    const ms = (us: number): number => Math.round(us) / 1000;
    const statuses: Record<string, number> = { '200': parsed.n - parsed.non2xx };
    if (parsed.non2xx) statuses.non2xx = parsed.non2xx;
    if (parsed.socket) statuses.error = parsed.socket;
    return { n: parsed.n, seconds: parsed.us / 1e6, latencyMs: { p50: ms(parsed.p50), p90: ms(parsed.p90), p99: ms(parsed.p99), mean: ms(parsed.mean) }, statuses };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function nodeRun(url: string, body: string, concurrency: number, seconds: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [LOADGEN, JSON.stringify({ url, body, concurrency, seconds, warmupSeconds: 1 })], { maxBuffer: 1 << 30 }, (error, stdout) => {
      if (error) return reject(error);
      const raw = JSON.parse(stdout) as { latenciesMs: number[]; statuses: Record<string, number>; seconds: number };
      const row = summarize('', '', '', 'ms', raw.latenciesMs);
      resolve({ n: row.n, seconds: raw.seconds, latencyMs: { p50: row.p50, p90: row.p90, p99: row.p99, mean: row.mean }, statuses: raw.statuses });
    });
  });
}

/** A closed loop of `concurrency` keep-alive connections POSTing `body`, after a 1 s warm-up. */
export async function load(url: string, body: string, concurrency: number, seconds: number): Promise<LoadResult> {
  if (!WRK) {
    const cpu = measureCpu(); // the generator's warm-up second included
    const result = await nodeRun(url, body, concurrency, seconds);
    return { ...result, cpu: cpu() };
  }
  await wrkRun(url, body, concurrency, 1); // warm-up, discarded
  const cpu = measureCpu();
  const result = await wrkRun(url, body, concurrency, seconds);
  return { ...result, cpu: cpu() };
}

export const LOAD_GENERATOR_NOTE = WRK
  ? 'load generator: wrk (one thread, closed loop over keep-alive connections, 1 s warm-up discarded), in its own process'
  : 'load generator: bench/lib/loadgen.mjs (wrk is not installed), closed loop over keep-alive connections, 1 s warm-up discarded, in its own process; it tops out near 9,000 calls/s on a 2-core machine by itself';

/** The latency row and the calls/s row of one load run. */
export function loadRows(bench: string, system: string, metric: string, outcome: LoadResult, conditions: string): ResultRow[] {
  const failed = Object.entries(outcome.statuses).filter(([status]) => status !== '200');
  const cpu = outcome.cpu ? `; machine CPU ${outcome.cpu.busyPercent}% busy (${outcome.cpu.systemPercent}% in the kernel)` : '';
  const full = `${conditions}${failed.length ? `; non-200: ${JSON.stringify(Object.fromEntries(failed))}` : ''}${cpu}`;
  return [
    { bench, system, metric, unit: 'ms', n: outcome.n, ...outcome.latencyMs, conditions: full },
    rateRow(bench, system, `${metric}-throughput`, 'calls/s', outcome.n, outcome.seconds, full),
  ];
}

export interface BenchGateway {
  gateway: Gateway;
  close(): Promise<void>;
}

export async function startBenchGateway(name: string, overrides: Record<string, string> = {}): Promise<BenchGateway> {
  const stateDir = join(PROJECT_ROOT, '.fnbox', `bench-${name}-state`);
  rmSync(stateDir, { recursive: true, force: true });
  const gateway = await startGateway(parseConfig({ port: '0', stateDir, imagesDir: join(PROJECT_ROOT, '.fnbox', 'images'), logLevel: 'silent', queueWaitMs: '60000', ...overrides }, {}), silentLogger);
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
