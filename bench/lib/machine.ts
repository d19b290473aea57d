// What the numbers were measured on, written next to them.
import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import { detectCgroupHost } from '../../src/sandbox/cgroup/index.js';

function version(command: string, args: string[]): string | null {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim().split('\n')[0] ?? null;
  } catch {
    return null;
  }
}

export interface Machine {
  date: string;
  kernel: string;
  cgroupMode: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  docker: string | null;
  runc: string | null;
  bwrap: string | null;
  unshare: string | null;
}

export function describeMachine(): Machine {
  let cgroupMode = 'unknown';
  try {
    cgroupMode = detectCgroupHost().mode;
  } catch {
    // reported as unknown
  }
  return {
    date: new Date().toISOString(),
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    cgroupMode,
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    docker: version('docker', ['version', '--format', '{{.Server.Version}}']),
    runc: version('runc', ['--version']),
    bwrap: version('bwrap', ['--version']),
    unshare: version('unshare', ['--version']),
  };
}

/** The whole machine's CPU split over a stretch of time, from /proc/stat. */
export interface CpuSplit {
  busyPercent: number;
  systemPercent: number;
}

function cpuTicks(): number[] {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  return line.trim().split(/\s+/).slice(1).map(Number);
}

/**
 * Starts measuring; the returned function ends it. Tells whether a rate
 * was bound by the machine's CPUs (busy near 100%) or by waiting.
 */
export function measureCpu(): () => CpuSplit {
  const before = cpuTicks();
  return () => {
    const delta = cpuTicks().map((value, i) => value - (before[i] ?? 0));
    const total = delta.reduce((sum, value) => sum + value, 0) || 1;
    // user nice system idle iowait irq softirq steal …
    const idle = (delta[3] ?? 0) + (delta[4] ?? 0);
    const system = (delta[2] ?? 0) + (delta[5] ?? 0) + (delta[6] ?? 0);
    return { busyPercent: Math.round((1 - idle / total) * 100), systemPercent: Math.round((system / total) * 100) };
  };
}
