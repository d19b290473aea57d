// npm run bench -- density: host memory per warm sandbox against per warm
// container, the supporting processes' share included, and how many fit in
// a fixed budget.
import { readFileSync } from 'node:fs';
import { progress, startBenchWorker, type BenchContext } from './lib/context.js';
import { buildFunctionImage, containerMemoryBytes, daemonMemoryBytes, FUNCTION_IMAGE, removeContainers, removeImage, startContainer } from './lib/docker.js';
import { dockerReady } from './lib/peers.js';
import type { ResultRow } from './lib/stats.js';
import type { Worker } from '../src/runtime/worker.js';

const BUDGET_BYTES = 1024 ** 3;
const MiB = 1024 * 1024;

function rssBytes(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)/m)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function row(system: string, metric: string, unit: string, value: number, n: number, conditions: string): ResultRow {
  const rounded = Math.round(value * 100) / 100;
  return { bench: 'density', system, metric, unit, n, p50: rounded, p90: rounded, p99: rounded, mean: rounded, conditions };
}

export async function runDensity(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { host, images, quick } = context;
  const count = quick ? 8 : 20;
  const results: ResultRow[] = [];
  const notes = [
    `memory per warm unit = its cgroup's usage (memory.usage_in_bytes / memory.current) + its per-unit helper (fnbox-monitor / containerd-shim RSS) + the shared daemons' RSS divided by ${count} (gateway process and zygote / dockerd and containerd)`,
    'each unit is the same node function, warmed by one call',
  ];
  progress(`density: ${count} warm fnbox sandboxes`);
  const workers: Worker[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const worker = await startBenchWorker(host, images, 'node');
      await worker.invoke({ method: 'POST', url: 'http://density/', headers: [], body: Buffer.from('{}') });
      workers.push(worker);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    const perSandbox = workers.map((w) => w.sandbox.usage().memoryCurrentBytes + rssBytes(w.sandbox.monitorPid));
    const shared = rssBytes(process.pid) + rssBytes(host.launcher.zygotePid ?? 0);
    const fnbox = perSandbox.reduce((a, b) => a + b, 0) / count + shared / count;
    results.push(row('fnbox', 'memory-per-warm-unit', 'MiB', fnbox / MiB, count, `${count} warm node sandboxes`));
    results.push(row('fnbox', 'units-in-1-GiB', 'count', Math.floor(BUDGET_BYTES / fnbox), count, 'budget / memory per warm unit'));
  } finally {
    await Promise.all(workers.map((w) => w.destroy()));
  }

  if (!dockerReady()) {
    notes.push('docker: not measured — no running Docker engine');
    return { results, notes };
  }
  progress(`density: ${count} warm containers`);
  buildFunctionImage(images.getSync('node').rootfs);
  const names = Array.from({ length: count }, (_, i) => `fnbox-bench-density-${i}`);
  try {
    names.forEach((name, i) => startContainer(name, ['-p', `127.0.0.1:${18200 + i}:8080`, '--memory', '128m', '--cpus', '1', FUNCTION_IMAGE, '/usr/bin/node', '/opt/bench/server.mjs']));
    for (let i = 0; i < count; i++) {
      for (let attempt = 0; attempt < 50; attempt++) {
        if (await fetch(`http://127.0.0.1:${18200 + i}/`, { method: 'POST', body: '{}' }).then((r) => r.ok, () => false)) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    const perContainer = names.map(containerMemoryBytes);
    const docker = perContainer.reduce((a, b) => a + b, 0) / count + daemonMemoryBytes() / count;
    results.push(row('docker', 'memory-per-warm-unit', 'MiB', docker / MiB, count, `${count} warm containers running the function behind node:http`));
    results.push(row('docker', 'units-in-1-GiB', 'count', Math.floor(BUDGET_BYTES / docker), count, 'budget / memory per warm unit'));
  } finally {
    removeContainers(names);
    removeImage(FUNCTION_IMAGE);
  }
  return { results, notes };
}
