// npm run bench -- boot: sandbox boot (spec → the sandboxed /bin/true has
// exited) from nothing and in a sandbox parked ahead, runtime ready, root
// reset, parallel boots and 200 alive at once, side by side with unshare,
// bwrap, runc and docker on the same rootfs.
import { rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { SandboxHost, type Sandbox } from '../src/sandbox/index.js';
import { progress, startBenchWorker, type BenchContext } from './lib/context.js';
import { BARE_PROCESS, bootPeers, timeCommand, timeCommandAtOnce, timer, type Peer } from './lib/peers.js';
import { measureCpu } from './lib/machine.js';
import { percentile, rateRow, summarize, type ResultRow } from './lib/stats.js';

/** The HTTP bench's maxConcurrency: as many resets at once as its writing calls make. */
const PARALLEL_RESETS = 4;

/** The parallel-boot target compares this many boots at once with one alone. */
const PARALLEL_BOOTS = 50;

/** p99 of `parallel` over the p50 of `alone`, one decimal. */
function p99Over(parallel: number[], alone: number[]): string {
  const sorted = (values: number[]): number[] => [...values].sort((a, b) => a - b);
  return (percentile(sorted(parallel), 99) / percentile(sorted(alone), 50)).toFixed(1);
}

/** One boot's time in three parts, in ms: see the `boot-split-*` rows. */
interface BootSplit {
  beforeMonitor: number;
  inLauncher: number;
  afterStart: number;
}

async function fnboxBoot(host: SandboxHost, rootfs: string, split?: BootSplit[], onParked?: () => void): Promise<number> {
  const started = performance.now();
  const startedUs = Number(process.hrtime.bigint() / 1000n);
  const sandbox = await host.boot({ layers: [rootfs], argv: ['/bin/true'] });
  if (sandbox.bootedAhead) onParked?.();
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

/** A boot in the sandbox `host` keeps parked for it (src/sandbox/parked.ts), once the host had the time to park one. */
async function parkedBoot(host: SandboxHost, rootfs: string, split: BootSplit[]): Promise<number> {
  await host.idle();
  let parked = false;
  const elapsed = await fnboxBoot(host, rootfs, split, () => (parked = true));
  if (!parked) throw new Error('boot-parked: the boot found no sandbox parked for it');
  return elapsed;
}

function splitRows(metric: string, splits: BootSplit[], what: string): ResultRow[] {
  return [
    summarize('boot', 'fnbox', `${metric}-split-before-monitor`, 'ms', splits.map((s) => s.beforeMonitor), `of each ${what}: boot() until the monitor acts on it (uid range, cgroup, spec; from nothing, the zygote's fork; parked, the start command)`),
    summarize('boot', 'fnbox', `${metric}-split-in-launcher`, 'ms', splits.map((s) => s.inLauncher), `of each ${what}: inside the monitor until the program is exec'd (from nothing: layer, namespaces, ids, mounts, privileges; parked: hostname, the program's arguments)`),
    summarize('boot', 'fnbox', `${metric}-split-after-start`, 'ms', splits.map((s) => s.afterStart), `of each ${what}: /bin/true runs and exits, the gateway hears of it`),
  ];
}

/**
 * 50 boots at once on a host that keeps 50 sandboxes parked (parkAhead 50),
 * full before each round: everything but the program's own start is paid
 * before the burst, so what is left is what no reserve can take away.
 */
async function parkedBurst(stateDirBase: string, rootfs: string, rounds: number): Promise<ResultRow> {
  const stateDir = `${stateDirBase}-burst`;
  const host = await SandboxHost.open({ stateDir, parkAhead: PARALLEL_BOOTS });
  try {
    progress(`boot: 50 in parallel, ${PARALLEL_BOOTS} parked`);
    await fnboxBoot(host, rootfs); // the shape to park in
    const alone: number[] = [];
    for (let i = 0; i < 20; i++) alone.push(await parkedBoot(host, rootfs, []));
    const atOnce: number[] = [];
    let served = 0;
    for (let round = 0; round < rounds; round++) {
      await host.idle();
      const parkedBefore = host.parked().length;
      if (parkedBefore < PARALLEL_BOOTS) throw new Error(`boot-parked-50-parallel: only ${parkedBefore} sandboxes parked before the round`);
      atOnce.push(...(await Promise.all(Array.from({ length: PARALLEL_BOOTS }, () => fnboxBoot(host, rootfs, undefined, () => served++)))));
    }
    return summarize('boot', 'fnbox', `boot-parked-${PARALLEL_BOOTS}-parallel`, 'ms', atOnce, `${PARALLEL_BOOTS} boots at once on a host with ${PARALLEL_BOOTS} parked in their shape (parkAhead ${PARALLEL_BOOTS}), refilled before each round; ${served} of ${atOnce.length} ran in a parked sandbox; p99 ${p99Over(atOnce, alone)}× the p50 of ${alone.length} parked boots alone on that host`);
  } finally {
    await host.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

export async function runBoot(context: BenchContext): Promise<{ results: ResultRow[]; notes: string[] }> {
  const { host: defaultHost, images, quick } = context;
  // Boots from nothing: a host that parks no sandbox ahead (parkAhead 0),
  // every step paid by the boot, as the peers pay theirs.
  const unparkedState = `${defaultHost.stateDir}-unparked`;
  const host = await SandboxHost.open({ stateDir: unparkedState, parkAhead: 0 });
  const peers = bootPeers(images.getSync('shell').rootfs);
  try {
    return await measureBoots(host, defaultHost, images, peers, quick);
  } finally {
    for (const peer of peers) peer.cleanup?.();
    await host.close();
    rmSync(unparkedState, { recursive: true, force: true });
  }
}

async function measureBoots(host: SandboxHost, parking: SandboxHost, images: BenchContext['images'], peers: Peer[], quick: boolean): Promise<{ results: ResultRow[]; notes: string[] }> {
  const shell = images.getSync('shell');
  const results: ResultRow[] = [];
  const notes: string[] = [];
  const rounds = quick ? 5 : 10;
  const perRound = quick ? 20 : 40;
  for (const peer of peers) if (!peer.available) notes.push(`${peer.name}: not measured — ${peer.why}`);
  notes.push(`peers timed with ${timer}${timer === 'spawnSync' ? ' (includes Node spawn overhead, ~2 ms here)' : ' (shell start-up subtracted)'}; fnbox timed in-process through its API`);

  const samples = new Map<string, number[]>([['fnbox', []], ...peers.filter((p) => p.available).map((p) => [p.name, []] as [string, number[]])]);
  const bootSplits: BootSplit[] = [];
  const parked: number[] = [];
  const parkedSplits: BootSplit[] = [];
  for (let i = 0; i < 5; i++) {
    await fnboxBoot(host, shell.rootfs); // warm-up
    await fnboxBoot(parking, shell.rootfs);
  }
  // Interleaved rounds: machine drift hits every system alike.
  for (let round = 0; round < rounds; round++) {
    progress(`boot: round ${round + 1}/${rounds}`);
    for (let i = 0; i < perRound; i++) samples.get('fnbox')!.push(await fnboxBoot(host, shell.rootfs, bootSplits));
    for (let i = 0; i < perRound; i++) parked.push(await parkedBoot(parking, shell.rootfs, parkedSplits));
    for (const peer of peers.filter((p) => p.available)) {
      const runs = peer.name === 'docker' ? Math.max(2, Math.floor(perRound / 8)) : perRound;
      samples.get(peer.name)!.push(...timeCommand(peer.command!, runs));
    }
  }
  for (const [system, values] of samples) {
    results.push(summarize('boot', system, 'boot', 'ms', values, system === 'fnbox' ? 'from nothing (parkAhead 0): user+pid+mnt+net+ipc+uts+cgroup ns, overlay root, cgroup limits, caps dropped' : 'same rootfs'));
  }
  results.push(summarize('boot', 'fnbox', 'boot-parked', 'ms', parked, 'the same boot in a sandbox the host parked ahead in its shape (parkAhead 1, the SandboxHost default): namespaces, root, cgroup, privileges were made before the boot was asked for; the host idle before each boot (not timed)'));
  // Where fnbox's boot goes, from the same boots (CLOCK_MONOTONIC stamps of the gateway and the monitor).
  results.push(...splitRows('boot', bootSplits, 'boot from nothing above'), ...splitRows('boot-parked', parkedSplits, 'parked boot above'));

  // Back to back, a host parks the next sandbox while the boot before runs:
  // whether it is ready in time decides each boot.
  progress('boot: back to back, parking on');
  const parkingBackToBack: number[] = [];
  let claimed = 0;
  for (let i = 0; i < (quick ? 50 : 200); i++) {
    parkingBackToBack.push(await fnboxBoot(parking, shell.rootfs, undefined, () => claimed++));
  }
  results.push(summarize('boot', 'fnbox', 'boot-back-to-back-parking', 'ms', parkingBackToBack, `boots one after another on a host that parks ahead (parkAhead 1): ${claimed} of ${parkingBackToBack.length} ran in a parked sandbox (one ready, or one being parked, waited for)`));

  // What a cold start meets in practice: a boot after the host was quiet.
  // On v1/hybrid hosts that boot once waited ~8 ms for an RCU grace period
  // while its process was moved into the v1 cgroups by pid; the init now
  // joins them itself (join_cgroup1 in the launcher), which skips that lock.
  progress('boot: after a quiet moment');
  const afterIdle: number[] = [];
  for (let i = 0; i < (quick ? 10 : 30); i++) {
    await sleep(100);
    afterIdle.push(await fnboxBoot(host, shell.rootfs));
  }
  results.push(summarize('boot', 'fnbox', 'boot-after-idle', 'ms', afterIdle, `each boot after 100 ms with nothing booting; cgroup ${host.cgroups.mode}`));

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
  const parallelRounds = quick ? 2 : 5;
  const parallel: number[] = [];
  // How long the host's event loop (the gateway's, in production) stood still meanwhile.
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  for (let round = 0; round < parallelRounds; round++) {
    parallel.push(...(await Promise.all(Array.from({ length: PARALLEL_BOOTS }, () => fnboxBoot(host, shell.rootfs)))));
  }
  loopDelay.disable();
  results.push(summarize('boot', 'fnbox', `boot-${PARALLEL_BOOTS}-parallel`, 'ms', parallel, `${PARALLEL_BOOTS} boots from nothing started at once, each timed alone; p99 ${p99Over(parallel, samples.get('fnbox')!)}× the boot p50 above; the event loop stalled ${(loopDelay.max / 1e6).toFixed(0)} ms at most`));
  results.push(await parkedBurst(host.stateDir, shell.rootfs, parallelRounds));
  // The peers the same way, for scale: how much of the p99 is the machine's.
  // Docker is left out: a round of 50 would take many seconds. `bare` is
  // /bin/true with no isolation: the machine's own floor.
  for (const peer of [BARE_PROCESS, ...peers.filter((p) => p.available && p.name !== 'docker')]) {
    progress(`boot: 50 ${peer.name} in parallel`);
    const alone: number[] = [];
    for (let i = 0; i < (quick ? 20 : 50); i++) alone.push(...(await timeCommandAtOnce(peer.command!, 1)));
    const atOnce: number[] = [];
    for (let round = 0; round < parallelRounds; round++) atOnce.push(...(await timeCommandAtOnce(peer.command!, PARALLEL_BOOTS)));
    const what = peer === BARE_PROCESS ? 'no isolation, `sh -c /bin/true` as the peers are run; ' : '';
    results.push(
      summarize('boot', peer.name, 'boot-spawned', 'ms', alone, `${what}one at a time, each timed around Node's spawn (the reference of the row below)`),
      summarize('boot', peer.name, `boot-${PARALLEL_BOOTS}-parallel`, 'ms', atOnce, `${PARALLEL_BOOTS} started at once, each timed around Node's spawn; p99 ${p99Over(atOnce, alone)}× the boot-spawned p50`),
    );
  }

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

