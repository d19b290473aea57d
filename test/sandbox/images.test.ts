// Base images on the real filesystem: content-addressed, read-only,
// idempotent to rebuild, and collected once nothing current uses them.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/images/index.js';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { startTestGateway } from '../support/gateway.js';
import { TEST_IMAGE_DIR, tempDir } from '../support/env.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function storeIn(dir: string): ImageStore {
  return new ImageStore({ dir, definitionsDir: join(PROJECT_ROOT, 'images'), projectRoot: PROJECT_ROOT });
}

function imageDirs(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.startsWith('sha256-')).sort();
}

/** Every file and directory in the tree whose mode lets anyone write it. */
function writable(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isSymbolicLink()) continue;
      // /tmp is the one exception, sticky and open, as on any system.
      if (full === join(root, 'tmp')) continue;
      if (lstatSync(full).mode & 0o222) found.push(full);
      if (entry.isDirectory()) walk(full);
    }
  };
  walk(root);
  return found;
}

/** A process id that was just in use and is not any more. */
function deadPid(): number {
  const child = spawnSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' });
  return Number(child.stdout.trim());
}

/** What an earlier image format or an upgraded host binary leaves behind. */
function plantOldImage(dir: string, id: string): void {
  const rootfs = join(dir, id, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  writeFileSync(join(rootfs, 'bin', 'old'), 'old');
  chmodSync(join(rootfs, 'bin', 'old'), 0o555);
  chmodSync(join(rootfs, 'bin'), 0o555);
  writeFileSync(join(dir, id, 'image.json'), JSON.stringify({ id }));
}

describe('images', () => {
  const dir = tempDir('images');
  dirs.push(dir);

  it('are content-addressed and read-only, and a rebuild gives the same image', async () => {
    const first = storeIn(dir).getSync('shell');
    expect(first.id).toMatch(/^sha256-[0-9a-f]{64}$/);
    expect(first.rootfs).toBe(join(dir, first.id, 'rootfs'));
    expect(existsSync(join(first.rootfs, 'bin', 'sh'))).toBe(true);
    expect(writable(first.rootfs)).toEqual([]);
    // The loader's cache of the image's own libraries (glibc hosts), naming the image's libc.
    if (existsSync('/sbin/ldconfig') || existsSync('/usr/sbin/ldconfig')) {
      const cache = readFileSync(join(first.rootfs, 'etc', 'ld.so.cache'), 'latin1');
      expect(cache).toMatch(/^(glibc-ld\.so\.cache|ld\.so-1\.7\.0)/);
      expect(cache).toContain('/libc.so.6\0');
    }

    // A second store finds it through the recipe: no rebuild, the same file.
    const cached = storeIn(dir).getSync('shell');
    expect(cached).toEqual(first);

    // Without the recipe it is built again, to the same content and id, even
    // a second later: file times are part of the id.
    await sleep(1000);
    for (const recipe of readdirSync(join(dir, 'recipes'))) rmSync(join(dir, 'recipes', recipe));
    const rebuilt = storeIn(dir).getSync('shell');
    expect(rebuilt.id).toBe(first.id);
    expect(imageDirs(dir)).toEqual([first.id]);
    expect(readdirSync(dir).filter((name) => name.startsWith('tmp-'))).toEqual([]);
    // Two real builds: ~2 s here, 40-60 s in the emulated VMs of the cgroup-v1/v2 suites.
  }, 240_000);

  it('collect() removes old images, stale recipes and dead builds; keeps current images and live builds', () => {
    const store = storeIn(dir);
    const current = store.getSync('shell');
    const builtAt = current.builtAt;
    const old = `sha256-${'0'.repeat(64)}`;
    plantOldImage(dir, old);
    writeFileSync(join(dir, 'recipes', 'stale-recipe'), JSON.stringify({ id: old, libraries: [] }));
    writeFileSync(join(dir, 'recipes', 'half-written.tmp'), '{"id":');
    const deadBuild = `tmp-${deadPid()}-0a0b0c0d`;
    const liveBuild = `tmp-${process.pid}-01020304`;
    mkdirSync(join(dir, deadBuild, 'rootfs'), { recursive: true });
    mkdirSync(join(dir, liveBuild, 'rootfs'), { recursive: true });

    const collected = store.collect([current], { exclusive: true });
    expect(collected).toEqual({ images: [old], recipes: 2, staging: 1 });
    expect(imageDirs(dir)).toEqual([current.id]);
    expect(existsSync(join(dir, deadBuild))).toBe(false);
    expect(existsSync(join(dir, liveBuild))).toBe(true);
    // The current image is still found through its recipe, not rebuilt.
    expect(storeIn(dir).getSync('shell').builtAt).toBe(builtAt);
    rmSync(join(dir, liveBuild), { recursive: true });
  });

  it('in a shared images dir, collect() leaves every image and recipe alone', () => {
    const store = storeIn(dir);
    const current = store.getSync('shell');
    const other = `sha256-${'1'.repeat(64)}`;
    plantOldImage(dir, other);
    writeFileSync(join(dir, 'recipes', 'other-gateway'), JSON.stringify({ id: other, libraries: [] }));
    const deadBuild = `tmp-${deadPid()}-0e0f1011`;
    mkdirSync(join(dir, deadBuild));

    expect(store.collect([current], { exclusive: false })).toEqual({ images: [], recipes: 0, staging: 1 });
    expect(imageDirs(dir)).toEqual([current.id, other].sort());
    expect(JSON.parse(readFileSync(join(dir, 'recipes', 'other-gateway'), 'utf8')).id).toBe(other);
  });

  it('a gateway start removes what an earlier version left in its own images dir', async () => {
    const stateDir = tempDir('images-gateway');
    const own = join(stateDir, 'images');
    // The test images, hard-linked: no rebuild, and the shared copy stays intact.
    expect(spawnSync('cp', ['-al', TEST_IMAGE_DIR, own]).status).toBe(0);
    const old = `sha256-${'2'.repeat(64)}`;
    plantOldImage(own, old);
    const gateway = await startTestGateway('images-gateway', { imagesDir: undefined }, stateDir);
    try {
      const current = ['shell', 'node', 'python', 'exec'].map((name) => storeIn(own).getSync(name).id);
      expect(imageDirs(own)).toEqual([...new Set(current)].sort());
      expect(existsSync(join(TEST_IMAGE_DIR, current[0]!))).toBe(true);
    } finally {
      await gateway.stop();
    }
    // 20-45 s in the emulated VMs (a hard-linked copy of four images, a gateway start with spares).
  }, 240_000);
});
