// What a sandbox could leave behind on the host, read from the kernel:
// mounts, cgroup directories, processes, files. Tests compare a snapshot
// before and after.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_ID_RANGES, type SandboxHost } from '../../src/sandbox/index.js';
import { ID_RANGE } from '../../src/sandbox/spec.js';

export interface HostState {
  mounts: string[];
  cgroupDirs: string[];
  processes: Map<number, string>;
  files: string[];
}

function listTree(dir: string, depth = 8): string[] {
  const out: string[] = [];
  if (depth < 0) return out;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const entry of entries) {
    const full = join(dir, entry.name);
    out.push(full);
    if (entry.isDirectory()) out.push(...listTree(full, depth - 1));
  }
  return out;
}

/** Mount lines without their (reused) ids: what is mounted where. */
export function hostMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ').slice(3).join(' '))
    .sort();
}

/** Every cgroup directory whose path says fnbox (or `only`), in every hierarchy. */
export function fnboxCgroupDirs(only = 'fnbox'): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 7) return;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const full = join(dir, entry.name);
      if (full.includes(only)) found.push(full);
      walk(full, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found.sort();
}

/** Host processes by pid with their real uid. */
export function hostProcesses(): Map<number, string> {
  const out = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const uid = status.match(/^Uid:\s+(\d+)/m)?.[1] ?? '?';
      const name = status.match(/^Name:\s+(.*)$/m)?.[1] ?? '?';
      out.set(Number(entry), `${name} uid=${uid}`);
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** Processes running as a host uid in [from, to). */
export function processesWithUidIn(from: number, to: number): string[] {
  return [...hostProcesses().entries()]
    .filter(([, desc]) => {
      const uid = Number(desc.split('uid=')[1]);
      return uid >= from && uid < to;
    })
    .map(([pid, desc]) => `${pid} ${desc}`);
}

/**
 * The processes left in a host uid range a test's sandboxes used, unless
 * another process (another test file's host, running meanwhile) has claimed
 * that range since: its sandboxes' processes are its own, not leftovers.
 */
export function leftoversInRange(hostIdBase: number): string[] {
  const slot = (hostIdBase - DEFAULT_ID_RANGES.base) / ID_RANGE;
  try {
    const owner = Number(readFileSync(join(DEFAULT_ID_RANGES.lockDir, String(slot)), 'utf8'));
    if (owner && owner !== process.pid) return [];
  } catch {
    // unclaimed: whatever runs there is ours to answer for
  }
  return processesWithUidIn(hostIdBase, hostIdBase + ID_RANGE);
}

type MadeAhead = Pick<SandboxHost, 'cgroupParentName' | 'reservedCgroupDirs' | 'parked'>;

/**
 * A host's cgroup directories other than those it made ahead for its next
 * boots (the empty ones of src/sandbox/cgroup/reserve.ts, and those of the
 * sandboxes it keeps parked, src/sandbox/parked.ts): those of its
 * sandboxes, and its parents.
 */
export function sandboxCgroupDirs(host: MadeAhead): string[] {
  const ahead = new Set([...host.reservedCgroupDirs(), ...host.parked().flatMap((parked) => parked.cgroupDirs)]);
  return fnboxCgroupDirs(host.cgroupParentName).filter((dir) => !ahead.has(dir));
}

export function snapshot(stateDir: string, host: MadeAhead): HostState {
  return {
    mounts: hostMounts(),
    cgroupDirs: sandboxCgroupDirs(host),
    processes: hostProcesses(),
    files: stateDir ? listTree(stateDir) : [],
  };
}

/** Processes that exist now and did not before (other than `ignore`). */
export function newProcesses(before: HostState, ignore: (desc: string) => boolean = () => false): string[] {
  const now = hostProcesses();
  return [...now.entries()].filter(([pid, desc]) => !before.processes.has(pid) && !ignore(desc)).map(([pid, desc]) => `${pid} ${desc}`);
}
