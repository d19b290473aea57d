// Finds the cgroup hierarchies this process lives in and decides which
// driver fits: pure v2 (controllers in the unified tree), hybrid (v1
// controllers plus a controller-less cgroup2 mount), or v1 only.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FnboxError } from '../../errors.js';
import { parseCgroupMounts, parseProcCgroup, type CgroupMount, type ProcCgroupLine } from './files.js';
import type { CgroupMode } from './types.js';

export interface CgroupHost {
  mode: CgroupMode;
  /** Our own cgroup in the cgroup2 tree, when one is mounted. */
  unifiedSelf?: string;
  /** The cgroup2 mount point (the root cgroup is exempt from some rules). */
  unifiedRoot?: string;
  /** Our own cgroup directory per v1 controller (memory, cpu, ...). */
  v1Self: Map<string, string>;
}

function selfDir(mount: CgroupMount, line: ProcCgroupLine | undefined): string | undefined {
  if (!line) return undefined;
  // A mount may show a subtree only (containers): strip its root.
  const relative = mount.root === '/' ? line.path
    : line.path === mount.root || line.path.startsWith(`${mount.root}/`) ? line.path.slice(mount.root.length) : undefined;
  if (relative === undefined) return undefined;
  return join(mount.mountPoint, relative).replace(/(.)\/+$/, '$1');
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function detectCgroupHost(
  procSelfCgroup = readFileSync('/proc/self/cgroup', 'utf8'),
  mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'),
  readControllers: (dir: string) => string | undefined = (dir) => readOrUndefined(join(dir, 'cgroup.controllers')),
): CgroupHost {
  const lines = parseProcCgroup(procSelfCgroup);
  const mounts = parseCgroupMounts(mountinfo);
  const v1Self = new Map<string, string>();
  let unifiedSelf: string | undefined;
  let unifiedRoot: string | undefined;
  for (const mount of mounts) {
    if (mount.version === 2) {
      if (unifiedSelf) continue;
      unifiedSelf = selfDir(mount, lines.find((line) => line.hierarchyId === 0));
      if (unifiedSelf) unifiedRoot = mount.mountPoint;
      continue;
    }
    const line = lines.find((candidate) => mount.controllers.some((c) => candidate.controllers.includes(c)));
    const dir = selfDir(mount, line);
    if (dir) for (const controller of mount.controllers) if (!v1Self.has(controller)) v1Self.set(controller, dir);
  }
  if (v1Self.has('memory')) return { mode: unifiedSelf ? 'hybrid' : 'v1', unifiedSelf, unifiedRoot, v1Self };
  if (unifiedSelf) {
    const available = (readControllers(unifiedSelf) ?? '').trim().split(/\s+/).filter(Boolean);
    if (available.includes('memory') && available.includes('pids')) return { mode: 'v2', unifiedSelf, unifiedRoot, v1Self };
    throw new FnboxError('HostUnsupported',
      `the cgroup2 tree at ${unifiedSelf} does not delegate the memory and pids controllers (it has: ${available.join(' ') || 'none'}); ` +
      'run fnbox in a cgroup with them delegated (e.g. systemd-run -p Delegate=yes) or as root at a cgroup that has them');
  }
  throw new FnboxError('HostUnsupported', 'no cgroup filesystem is mounted (need cgroup2, or cgroup v1 with the memory controller)');
}
