// npm run bench -- boot: sandbox boot (spec → the sandboxed /bin/true has
// exited), runtime ready, root reset, parallel boots and 200 alive at once,
// side by side with unshare, bwrap, runc and docker on the same rootfs.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sandbox, SandboxHost } from '../src/sandbox/index.js';
import { progress, startBenchWorker, type BenchContext } from './lib/context.js';
import { bootPeers, timeCommand, timer } from './lib/peers.js';
import { measureCpu } from './lib/machine.js';
import { rateRow, summarize, type ResultRow } from './lib/stats.js';

/** The HTTP bench's maxConcurrency: as many resets at once as its writing calls make. */
const PARALLEL_RESETS = 4;

/** One boot's time in three parts, in ms: see the `boot-split-*` rows. */
interface BootSplit {
  beforeMonitor: number;
  inLauncher: number;
  afterStart: number;
}

async function fnboxBoot(host: SandboxHost, rootfs: string, split?: BootSplit[]): Promise<number> {
  const started = performance.now();
  const startedUs = Number(process.hrtime.bigint() / 1000n);
  const sandbox = await host.boot({ layers: [rootfs], argv: ['/bin/true'] });
  await sandbox.exited;
  const elapsed = performance.now() - started;
  await sandbox.destroy();
  // The monitor stamps its start with CLOCK_MONOTONIC, process.hrtime's clock.
  const beforeMonitor = (sandbox.monitorStartedUs - startedUs) / 1000;
  const inLauncher = sandbox.bootUs / 1000;
  split?.push({ beforeMonitor, inLauncher, afterStart: elapsed - beforeMonitor - inLauncher });
  return elapsed;
}

interface ResetTimes {
  roundTrip: number[];
  toMonitor: number[];
  inLauncher: number[];
  back: number[];
}

/** `count` forced resets of `sandbox`, `gapMs` apart, in ms; split by the monitor's CLOCK_MONOTONIC stamps. */
async function timeResets(sandbox: Sandbox, count: number, gapMs: number): Promise<ResetTimes> {
  const times: ResetTimes = { roundTrip: [], toMonitor: [], inLauncher: [], back: [] };
  for (let i = 0; i < count; i++) {
    if (gapMs) await sleep(gapMs);
    const startedUs = Number(process.hrtime.bigint() / 1000n);
    const result = await sandbox.resetRoot({ force: true });
    const roundTrip = Number(process.hrtime.bigint() / 1000n) - startedUs;
    const toMonitor = result.startedUs - startedUs;
    times.roundTrip.push(roundTrip / 1000);
    times.toMonitor.push(toMonitor / 1000);
    times.inLauncher.push(result.us / 1000);
    times.back.push((roundTrip - toMonitor - result.us) / 1000);
  }
  return times;
}

export async function runBoot(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { host, images, quick } = context;
  const shell = images.getSync('shell');
  const results: ResultRow[] = [];
  const notes: string[] = [];
  const rounds = quick ? 5 : 10;
  const perRound = quick ? 20 : 40;
  const peers = bootPeers(shell.rootfs);
  for (const peer of peers) if (!peer.available) notes.push(`${peer.name}: not measured — ${peer.why}`);
  notes.push(`peers timed with ${timer}${timer === 'spawnSync' ? ' (includes Node spawn overhead, ~2 ms here)' : ' (shell start-up subtracted)'}; fnbox timed in-process through its API`);

  const samples = new Map<string, number[]>([['fnbox', []], ...peers.filter((p) => p.available).map((p) => [p.name, []] as [string, number[]])]);
  const bootSplits: BootSplit[] = [];
  for (let i = 0; i < 5; i++) await fnboxBoot(host, shell.rootfs); // warm-up
  // Interleaved rounds: machine drift hits every system alike.
  for (let round = 0; round < rounds; round++) {
    progress(`boot: round ${round + 1}/${rounds}`);
    for (let i = 0; i < perRound; i++) samples.get('fnbox')!.push(await fnboxBoot(host, shell.rootfs, bootSplits));
    for (const peer of peers.filter((p) => p.available)) {
      const runs = peer.name === 'docker' ? Math.max(2, Math.floor(perRound / 8)) : perRound;
      samples.get(peer.name)!.push(...timeCommand(peer.command!, runs));
    }
  }
  for (const [system, values] of samples) {
    results.push(summarize('boot', system, 'boot', 'ms', values, system === 'fnbox' ? 'user+pid+mnt+net+ipc+uts+cgroup ns, overlay root, cgroup limits, caps dropped' : 'same rootfs'));
  }
  // Where fnbox's boot goes, from the same boots (CLOCK_MONOTONIC stamps of the gateway and the monitor).
  results.push(
    summarize('boot', 'fnbox', 'boot-split-before-monitor', 'ms', bootSplits.map((s) => s.beforeMonitor), 'of each boot above: boot() until the forked monitor runs (uid range, cgroup, spec, the zygote\'s fork)'),
    summarize('boot', 'fnbox', 'boot-split-in-launcher', 'ms', bootSplits.map((s) => s.inLauncher), 'of each boot above: inside the monitor until the program is exec\'d (layer, namespaces, ids, mounts, privileges)'),
    summarize('boot', 'fnbox', 'boot-split-after-start', 'ms', bootSplits.map((s) => s.afterStart), 'of each boot above: /bin/true runs and exits, the gateway hears of it'),
  );
  for (const peer of peers) peer.cleanup?.();

  // What a cold start meets in practice: a boot after the host was quiet.
  // On v1/hybrid hosts without favordynmods that boot waits for an RCU grace
  // period while its process joins the v1 cgroups (src/sandbox/cgroup/detect.ts).
  progress('boot: after a quiet moment');
  const afterIdle: number[] = [];
  for (let i = 0; i < (quick ? 10 : 30); i++) {
    await sleep(100);
    afterIdle.push(await fnboxBoot(host, shell.rootfs));
  }
  const tuning = host.tuningHints.length ? 'favordynmods off (see the start-up hint)' : `cgroup ${host.cgroups.mode === 'v2' ? 'v2: no migration' : 'favordynmods on'}`;
  results.push(summarize('boot', 'fnbox', 'boot-after-idle', 'ms', afterIdle, `each boot after 100 ms with nothing booting; ${tuning}`));

  progress('boot: root reset');
  const sleeper = await host.boot({ layers: [shell.rootfs], argv: ['/bin/sleep', '600'] });
  // As in the call loop: each reset finds the monitor idle, its next layer
  // built while the previous call ran. Back to back, a reset also waits for
  // the monitor to finish building the layer after the one before.
  const spaced = await timeResets(sleeper, quick ? 200 : 1000, 1);
  const backToBack = await timeResets(sleeper, quick ? 200 : 1000, 0);
  await sleeper.destroy();
  const spacedConditions = 'round trip from the gateway, each reset 1 ms after the one before (a call\'s time)';
  results.push(
    summarize('boot', 'fnbox', 'reset', 'ms', spaced.roundTrip, spacedConditions),
    summarize('boot', 'fnbox', 'reset-split-to-monitor', 'ms', spaced.toMonitor, 'of each reset above: the gateway writes the command, the monitor wakes'),
    summarize('boot', 'fnbox', 'reset-in-launcher', 'ms', spaced.inLauncher, 'of each reset above: inside the monitor until its reply (attach the layer built ahead, pivot_root, kill any process that kept the old root; the old root is detached after the reply unless a process had to be held still or the old layer is big)'),
    summarize('boot', 'fnbox', 'reset-split-back', 'ms', spaced.back, 'of each reset above: the reply reaches the gateway'),
    summarize('boot', 'fnbox', 'reset-back-to-back', 'ms', backToBack.roundTrip, 'round trip, each reset sent as soon as the one before returned (it waits for the monitor to build the next layer)'),
  );

  // The ceiling of "every call writes a file" through HTTP at maxConcurrency
  // 4: the same resets with no call, no runtime and no HTTP around them.
  progress('boot: root resets, 4 sandboxes at once');
  const resetters = await Promise.all(Array.from({ length: PARALLEL_RESETS }, () => host.boot({ layers: [shell.rootfs], argv: ['/bin/sleep', '600'] })));
  const parallelReset: number[] = [];
  const seconds = quick ? 2 : 5;
  const cpu = measureCpu();
  const resetsEnd = performance.now() + seconds * 1000;
  await Promise.all(resetters.map(async (sandbox) => {
    while (performance.now() < resetsEnd) {
      const started = performance.now();
      await sandbox.resetRoot({ force: true });
      parallelReset.push(performance.now() - started);
    }
  }));
  const split = cpu();
  await Promise.all(resetters.map((sandbox) => sandbox.destroy()));
  const resetConditions = `${PARALLEL_RESETS} sandboxes resetting back to back for ${seconds} s; machine CPU ${split.busyPercent}% busy (${split.systemPercent}% in the kernel)`;
  results.push(rateRow('boot', 'fnbox', `reset-${PARALLEL_RESETS}-parallel-throughput`, 'resets/s', parallelReset.length, seconds, resetConditions));
  results.push(summarize('boot', 'fnbox', `reset-${PARALLEL_RESETS}-parallel`, 'ms', parallelReset, resetConditions));

  progress('boot: runtime ready');
  for (const runtime of ['node', 'python'] as const) {
    const ready: number[] = [];
    for (let i = 0; i < (quick ? 5 : 20); i++) {
      const worker = await startBenchWorker(host, images, runtime);
      ready.push(worker.bootMs);
      await worker.destroy();
    }
    results.push(summarize('boot', 'fnbox', `ready-${runtime}`, 'ms', ready, 'spec → runtime loaded the function and reported ready'));
  }

  progress('boot: 50 in parallel');
  const parallel: number[] = [];
  for (let round = 0; round < (quick ? 2 : 5); round++) {
    parallel.push(...(await Promise.all(Array.from({ length: 50 }, () => fnboxBoot(host, shell.rootfs)))));
  }
  results.push(summarize('boot', 'fnbox', 'boot-50-parallel', 'ms', parallel, '50 boots started at once, each timed alone'));

  progress('boot: 200 alive');
  const alive = [];
  const scaling = new Map<number, number[]>([[1, []], [10, []], [50, []], [200, []]]);
  for (let i = 0; i < 200; i++) {
    if (scaling.has(alive.length)) {
      for (let j = 0; j < 10; j++) scaling.get(alive.length)!.push(await fnboxBoot(host, shell.rootfs));
    }
    alive.push(await host.boot({ layers: [shell.rootfs], argv: ['/bin/sleep', '600'] }));
  }
  for (let j = 0; j < 10; j++) scaling.get(200)!.push(await fnboxBoot(host, shell.rootfs));
  const living = alive.filter((sandbox) => sandbox.alive).length;
  notes.push(`${living} sandboxes were alive at once`);
  for (const [count, values] of scaling) results.push(summarize('boot', 'fnbox', `boot-with-${count}-alive`, 'ms', values, `${count} sandboxes already running`));
  await Promise.all(alive.map((sandbox) => sandbox.destroy()));
  return { results, notes };
}

