// Docker images for the peers, made with `docker import` from the same
// root filesystems fnbox uses (no registry is reachable), and the
// containers the comparisons run. Everything made here is removed again.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { BENCH_FUNCTIONS } from './context.js';

export const FUNCTION_IMAGE = 'fnbox-bench-node-fn';

function docker(args: string[], options: { input?: string; timeout?: number } = {}): string {
  return execFileSync('docker', args, { encoding: 'utf8', input: options.input, timeout: options.timeout ?? 120_000, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The node image's rootfs plus the bench function at /code and the peer scripts at /opt/bench. */
export function buildFunctionImage(nodeRootfs: string): void {
  const dir = mkdtempSync(join(tmpdir(), 'fnbox-docker-'));
  try {
    const tar = join(dir, 'image.tar');
    execFileSync('tar', ['-C', nodeRootfs, '-cf', tar, '.']);
    // Files only: /code already exists in the rootfs, and docker refuses duplicate paths.
    const codeFiles = readdirSync(join(BENCH_FUNCTIONS, 'node', 'code')).map((file) => `./code/${file}`);
    execFileSync('tar', ['-C', join(BENCH_FUNCTIONS, 'node'), '-rf', tar, ...codeFiles]);
    execFileSync('tar', ['-C', join(PROJECT_ROOT, 'bench'), '--transform', 's,^container,opt/bench,', '-rf', tar, 'container']);
    execFileSync('sh', ['-c', `docker import ${tar} ${FUNCTION_IMAGE}`], { stdio: 'ignore' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function startContainer(name: string, args: string[]): void {
  spawnSync('docker', ['rm', '-f', name], { stdio: 'ignore' });
  docker(['run', '-d', '--name', name, ...args]);
}

export function removeContainers(names: string[]): void {
  if (names.length) spawnSync('docker', ['rm', '-f', ...names], { stdio: 'ignore' });
}

export function removeImage(image: string): void {
  spawnSync('docker', ['rmi', '-f', image], { stdio: 'ignore' });
}

export function dockerOk(args: string[], input?: string): boolean {
  return spawnSync('docker', args, { input, stdio: ['pipe', 'ignore', 'ignore'], timeout: 120_000 }).status === 0;
}

/** Host-side memory of one container: its cgroup's usage plus its containerd-shim. */
export function containerMemoryBytes(name: string): number {
  const id = docker(['inspect', '--format', '{{.Id}}', name]).trim();
  const pid = Number(docker(['inspect', '--format', '{{.State.Pid}}', name]).trim());
  let cgroupBytes = 0;
  for (const candidate of [`/sys/fs/cgroup/memory/docker/${id}/memory.usage_in_bytes`, `/sys/fs/cgroup/system.slice/docker-${id}.scope/memory.current`, `/sys/fs/cgroup/docker/${id}/memory.current`]) {
    try {
      cgroupBytes = Number(execFileSync('cat', [candidate], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      break;
    } catch {
      // not this layout
    }
  }
  const shim = Number(execFileSync('sh', ['-c', `ps -o ppid= -p ${pid} | xargs -I{} sh -c 'grep VmRSS /proc/{}/status' | awk '{print $2}'`], { encoding: 'utf8' }).trim() || 0) * 1024;
  return cgroupBytes + shim;
}

/** RSS of dockerd and containerd: the daemons every container shares. */
export function daemonMemoryBytes(): number {
  const out = execFileSync('sh', ['-c', "for p in $(pidof dockerd containerd); do grep VmRSS /proc/$p/status | awk '{print $2}'; done"], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).reduce((sum, kb) => sum + Number(kb) * 1024, 0);
}
