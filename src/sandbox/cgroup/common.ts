// Directory handling shared by every driver: making and removing cgroup
// directories, and finding leftovers of an earlier run.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FnboxError } from '../../errors.js';
import type { CgroupFs } from './fs.js';
import type { CgroupRecipe } from './types.js';

export function ensureDir(fs: CgroupFs, dir: string): void {
  if (!fs.exists(dir)) fs.mkdir(dir);
}

/** Makes a cgroup as `recipe` says; on failure removes what it made and says why. */
export function followRecipe(fs: CgroupFs, name: string, recipe: CgroupRecipe): void {
  const made: string[] = [];
  try {
    for (const dir of recipe.mkdirs) {
      fs.mkdir(dir);
      made.push(dir);
    }
    for (const [file, value] of recipe.writes) fs.write(file, value);
  } catch (error) {
    for (const dir of made.reverse()) void removeDir(fs, dir, 0).catch(() => {});
    throw new FnboxError('SandboxError', `creating cgroup ${name} failed: ${(error as Error).message}`, { cause: error });
  }
}

export function tryRead(fs: CgroupFs, path: string): string | undefined {
  try {
    return fs.read(path);
  } catch {
    return undefined;
  }
}

/**
 * rmdir, retrying while the kernel still counts exiting tasks: a cgroup is
 * busy until the last zombie of the sandbox has been reaped.
 */
export async function removeDir(fs: CgroupFs, dir: string, attempts = 100): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      fs.rmdir(dir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= attempts) throw error;
      await sleep(attempt < 10 ? 1 : 10);
    }
  }
}

/** Kill every process listed in a cgroup (when there is no cgroup.kill). */
export function killListed(fs: CgroupFs, dir: string): void {
  for (const pid of (tryRead(fs, join(dir, 'cgroup.procs')) ?? '').split('\n')) {
    if (!pid) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Child cgroup directories of a parent (leftover sandboxes). */
export function childDirs(fs: CgroupFs, parent: string): string[] {
  try {
    return fs.listDirs(parent).map((name) => join(parent, name));
  } catch {
    return [];
  }
}

export function writeIfPresent(fs: CgroupFs, path: string, value: string): boolean {
  if (!fs.exists(path)) return false;
  fs.write(path, value);
  return true;
}

/**
 * Kills a sandbox's whole tree at once: cgroup.kill where a cgroup2
 * directory has one; else SIGKILL to the sandbox's PID 1, which takes its
 * whole PID namespace; else every listed process.
 */
export function killTree(fs: CgroupFs, cgroup2Dir: string | undefined, initPid: number | undefined, listedDir: string): void {
  if (cgroup2Dir && writeIfPresent(fs, join(cgroup2Dir, 'cgroup.kill'), '1')) return;
  if (initPid) {
    try {
      process.kill(initPid, 'SIGKILL');
      return;
    } catch {
      // gone already, or never started: fall through to the list
    }
  }
  killListed(fs, listedDir);
}
