// The adversarial suite's frame: each attack is a real function deployed
// through the API. For each one we check (a) the typed outcome the caller
// gets, (b) that a well-behaved function keeps answering within 2× its idle
// latency while the attack runs, and (c) that the host is unchanged after:
// no mounts, no cgroups, no processes, no files outside the state dir, the
// attacker's host uids unused.
import { readdirSync } from 'node:fs';
import { expect } from 'vitest';
import { deployFiles, type TestGateway } from '../support/gateway.js';
import { fnboxCgroupDirs, hostMounts, processesWithUidIn } from '../support/host-state.js';

const WATCHED_DIRS = ['/', '/tmp', '/var/tmp', '/dev/shm', '/run', '/etc', '/root'];

export const WITNESS = {
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index.handler', minWarm: 1 }),
  'index.mjs': 'export const handler = async (event) => ({ witness: event });',
};

function listing(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const dir of WATCHED_DIRS) {
    try {
      // Test runs make their own temp dirs (fnbox-test-*): those are not the attacker's.
      out[dir] = readdirSync(dir).filter((name) => !name.startsWith('fnbox-test-') && !name.startsWith('fnbox-hyperfine') && !name.startsWith('vitest')).sort();
    } catch {
      out[dir] = [];
    }
  }
  return out;
}

export interface HostView {
  mounts: string[];
  cgroups: string[];
  files: Record<string, string[]>;
}

export function hostView(gateway: TestGateway): HostView {
  return { mounts: hostMounts(), cgroups: fnboxCgroupDirs(gateway.deps.host.cgroupParentName), files: listing() };
}

export async function witnessLatency(gateway: TestGateway, calls = 15): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < calls; i++) {
    const started = performance.now();
    const response = await fetch(`${gateway.url}/invoke/witness`, { method: 'POST', body: String(i) });
    expect(await response.json()).toEqual({ witness: i });
    samples.push(performance.now() - started);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

export async function setUpWitness(gateway: TestGateway): Promise<number> {
  const deployed = await deployFiles(gateway, 'witness', WITNESS);
  expect(deployed.status, await deployed.clone().text()).toBe(201);
  await witnessLatency(gateway, 20);
  return witnessLatency(gateway, 30);
}

/** The attacker's sandboxes, as /sandboxes shows them. */
async function sandboxesOf(gateway: TestGateway, name: string): Promise<Array<{ hostUid: number }>> {
  const { sandboxes } = (await (await fetch(`${gateway.url}/sandboxes`)).json()) as { sandboxes: Array<{ function: string; hostUid: number }> };
  return sandboxes.filter((sb) => sb.function === name);
}

async function spareCgroupDirs(gateway: TestGateway): Promise<string[]> {
  const { sandboxes } = (await (await fetch(`${gateway.url}/sandboxes`)).json()) as { sandboxes: Array<{ state: string; cgroupDirs: string[] }> };
  return sandboxes.filter((sb) => sb.state === 'spare').flatMap((sb) => sb.cgroupDirs);
}

/**
 * Runs `attack` (which deploys and calls function `name`) while measuring
 * the witness; then deletes the attacker and checks the host is as before.
 */
export async function underAttack<T>(gateway: TestGateway, idleMs: number, name: string, attack: () => Promise<T>): Promise<T> {
  const before = hostView(gateway);
  const seenUids = new Set<number>();
  let attacking = true;
  const watch = (async () => {
    while (attacking) {
      for (const sb of await sandboxesOf(gateway, name)) seenUids.add(sb.hostUid);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  const outcome = attack();
  const during = await witnessLatency(gateway);
  const result = await outcome;
  attacking = false;
  await watch;
  for (const sb of await sandboxesOf(gateway, name)) seenUids.add(sb.hostUid);
  // (b) the well-behaved function kept its pace (2×, plus 1 ms for timer noise)
  expect(during, `witness p50 during the attack vs idle ${idleMs.toFixed(2)} ms`).toBeLessThanOrEqual(idleMs * 2 + 1);
  // (c) the host is unchanged once the attacker is deleted
  await fetch(`${gateway.url}/functions/${name}`, { method: 'DELETE' });
  const after = hostView(gateway);
  expect(after.mounts).toEqual(before.mounts);
  expect(after.files).toEqual(before.files);
  // Spare runtimes are the gateway's own (a fresh one may replace one the attacker's deploy took).
  const spareCgroups = await spareCgroupDirs(gateway);
  expect(after.cgroups.filter((dir) => !before.cgroups.includes(dir) && !spareCgroups.includes(dir))).toEqual([]);
  for (const uid of seenUids) expect(processesWithUidIn(uid - 1000, uid - 1000 + 65536), `host uid range of ${uid}`).toEqual([]);
  return result;
}
