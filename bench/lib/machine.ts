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
