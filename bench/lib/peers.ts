// The runtimes fnbox is compared with, run from their own command lines.
// Commands are timed with hyperfine when it is installed (fork+exec from a
// native tool, shell overhead subtracted); otherwise with Node's spawnSync,
// which adds Node's own spawn cost (~2 ms here) and is said so in the
// conditions column.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Peer {
  name: string;
  available: boolean;
  why?: string;
  /** A shell command that boots the peer and runs /bin/true in it. */
  command?: string;
  cleanup?: () => void;
}

export function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

export const timer = has('hyperfine') ? 'hyperfine' : 'spawnSync';

/** Times `runs` executions of a shell command; returns milliseconds per run. */
export function timeCommand(command: string, runs: number): number[] {
  if (timer === 'hyperfine') {
    const dir = mkdtempSync(join(tmpdir(), 'fnbox-hyperfine-'));
    try {
      execFileSync('hyperfine', ['--runs', String(runs), '--warmup', '1', '--style', 'none', '--export-json', join(dir, 'out.json'), command], { stdio: 'ignore', timeout: 600_000 });
      const data = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { results: Array<{ times: number[] }> };
      return data.results[0]!.times.map((seconds) => seconds * 1000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    spawnSync('sh', ['-c', command], { stdio: 'ignore' });
    samples.push(performance.now() - started);
  }
  return samples;
}

/**
 * `count` runs of a shell command started at once, each timed from its spawn
 * to its exit (Node's spawn cost included: compare with runs timed alone the
 * same way, `count` 1).
 */
export function timeCommandAtOnce(command: string, count: number): Promise<number[]> {
  return Promise.all(Array.from({ length: count }, () => new Promise<number>((resolve, reject) => {
    const started = performance.now();
    const child = spawn('sh', ['-c', command], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${command} exited with ${code}`))));
  })));
}

export function dockerReady(): boolean {
  return has('docker') && spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

/** A docker image made with `docker import` from an fnbox image's rootfs. */
export function dockerImport(rootfs: string, tag: string): void {
  execFileSync('sh', ['-c', `tar -C ${rootfs} -c . | docker import - ${tag}`], { stdio: 'ignore' });
}

/**
 * No isolation at all: the program alone, started the way the peers are.
 * The floor a sandbox's boot sits on, and what the machine itself does
 * with 50 process starts at once.
 */
export const BARE_PROCESS: Peer = { name: 'bare', available: true, command: '/bin/true' };

export function bootPeers(rootfs: string): Peer[] {
  const peers: Peer[] = [];
  peers.push(has('unshare')
    ? { name: 'unshare', available: true, command: 'unshare -pmnuif --mount-proc /bin/true' }
    : { name: 'unshare', available: false, why: 'unshare (util-linux) is not installed' });
  peers.push(has('bwrap')
    ? { name: 'bwrap', available: true, command: `bwrap --unshare-all --die-with-parent --ro-bind ${rootfs} / --proc /proc --dev /dev --tmpfs /tmp /bin/true` }
    : { name: 'bwrap', available: false, why: 'bubblewrap is not installed (npm run bench -- --setup installs it)' });
  if (has('runc')) {
    const bundle = mkdtempSync(join(tmpdir(), 'fnbox-runc-'));
    mkdirSync(join(bundle, 'rootfs'));
    execFileSync('runc', ['spec'], { cwd: bundle });
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    spec.root = { path: rootfs, readonly: true };
    spec.process.args = ['/bin/true'];
    spec.process.terminal = false;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    peers.push({ name: 'runc', available: true, command: `runc run --bundle ${bundle} fnbox-bench-$$`, cleanup: () => rmSync(bundle, { recursive: true, force: true }) });
  } else peers.push({ name: 'runc', available: false, why: 'runc is not installed (npm run bench -- --setup installs it)' });
  if (dockerReady()) {
    dockerImport(rootfs, 'fnbox-bench-shell');
    peers.push({
      name: 'docker', available: true, command: 'docker run --rm --network none fnbox-bench-shell /bin/true',
      cleanup: () => void spawnSync('docker', ['rmi', '-f', 'fnbox-bench-shell'], { stdio: 'ignore' }),
    });
  } else peers.push({ name: 'docker', available: false, why: 'no running Docker engine (npm run bench -- --setup installs and starts one)' });
  return peers;
}
