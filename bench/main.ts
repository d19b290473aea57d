// npm run bench -- [boot] [compare] [density] [invoke] [http] [--quick] [--setup]
// Runs the chosen scenarios and writes bench/results/<scenario>.json and .md;
// without a choice, runs the comparison suite (boot, compare, density) and
// also writes bench/results/latest.{json,md,svg}.
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { ImageStore } from '../src/images/index.js';
import { PROJECT_ROOT, SandboxHost } from '../src/sandbox/index.js';
import { runBoot } from './boot.js';
import { progress, RESULTS_DIR, type BenchContext } from './lib/context.js';
import { describeMachine } from './lib/machine.js';
import { writeResults } from './lib/output.js';
import { has } from './lib/peers.js';
import { runCompare } from './compare.js';
import { runDensity } from './density.js';
import { runHttp } from './http.js';
import { renderChart } from './lib/chart.js';
import { writeFileSync } from 'node:fs';
import { runInvoke } from './invoke.js';
import type { ResultRow } from './lib/stats.js';

const SCENARIOS: Record<string, (context: BenchContext) => Promise<{ results: ResultRow[]; notes: string[] }>> = {
  boot: runBoot,
  compare: runCompare,
  density: runDensity,
  invoke: runInvoke,
  http: runHttp,
};
const SUITE = ['boot', 'compare', 'density'];

/** --setup: install the peers from Debian and start a Docker engine, saying what it does. */
function setup(): void {
  const wanted = [['hyperfine', 'hyperfine'], ['wrk', 'wrk'], ['bwrap', 'bubblewrap'], ['runc', 'runc'], ['dockerd', 'docker.io']].filter(([command]) => !has(command!));
  if (wanted.length) {
    console.error(`setup: installing ${wanted.map(([, pkg]) => pkg).join(', ')} with apt-get`);
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...wanted.map(([, pkg]) => pkg!)], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  if (has('dockerd') && spawnSyncOk('docker', ['info'])) return;
  if (has('dockerd')) {
    console.error('setup: starting dockerd (logs in /tmp/fnbox-dockerd.log)');
    const daemon = spawn('sh', ['-c', 'exec dockerd > /tmp/fnbox-dockerd.log 2>&1'], { detached: true, stdio: 'ignore' });
    daemon.unref();
    for (let i = 0; i < 60 && !spawnSyncOk('docker', ['info']); i++) execFileSync('sleep', ['0.5']);
  }
}

function spawnSyncOk(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  if (args.includes('--setup')) setup();
  const chosen = args.filter((arg) => !arg.startsWith('--'));
  const names = chosen.length ? chosen : SUITE;
  for (const name of names) if (!SCENARIOS[name]) throw new Error(`unknown scenario ${name} (have: ${Object.keys(SCENARIOS).join(', ')})`);
  const stateDir = join(PROJECT_ROOT, '.fnbox', 'bench-state');
  const images = new ImageStore({ dir: join(PROJECT_ROOT, '.fnbox', 'images'), definitionsDir: join(PROJECT_ROOT, 'images'), projectRoot: PROJECT_ROOT });
  progress('building images');
  for (const image of ['shell', 'node', 'python', 'exec']) images.getSync(image);
  const host = await SandboxHost.open({ stateDir });
  const machine = describeMachine();
  const all: ResultRow[] = [];
  const allNotes: string[] = [];
  const suiteStarted = Date.now();
  try {
    for (const name of names) {
      const started = Date.now();
      const { results, notes } = await SCENARIOS[name]!({ host, images, quick });
      const files = writeResults(RESULTS_DIR, name, machine, results, notes);
      all.push(...results);
      allNotes.push(...notes.map((note) => `${name}: ${note}`));
      progress(`${name}: done in ${((Date.now() - started) / 1000).toFixed(1)} s → ${files.json}\n`);
    }
  } finally {
    await host.close();
  }
  if (!chosen.length) {
    allNotes.push(`the whole run took ${((Date.now() - suiteStarted) / 1000).toFixed(0)} s${quick ? ' (--quick)' : ''}`);
    const files = writeResults(RESULTS_DIR, 'latest', machine, all, allNotes);
    writeFileSync(join(RESULTS_DIR, 'latest.svg'), renderChart(machine, all));
    progress(`suite: ${files.json}, ${files.markdown}, ${join(RESULTS_DIR, 'latest.svg')}\n`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
