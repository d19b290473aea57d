// Base images: root filesystems built from host binaries and their shared
// libraries, cached and content-addressed. Building is idempotent: the same
// definition over the same host files gives the same image id.
//
//   <dir>/sha256-<content>/rootfs     the lowerdir (read-only by intent and mode)
//   <dir>/sha256-<content>/image.json what it holds
//   <dir>/recipes/<recipe-hash>       which content a recipe produced
//   <dir>/tmp-<pid>-<random>          a build in progress (renamed when done)
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync, copyFileSync, utimesSync, constants as fsConstants, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync,
  readlinkSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { FnboxError } from '../errors.js';
import { processAlive } from '../processes.js';
import { PROGRAM_GID, PROGRAM_UID } from '../sandbox/spec.js';
import { libraryClosure } from './closure.js';
import { resolveDefinition, type ResolvedDefinition } from './definition.js';
import { locateInterpreter, type InterpreterLayout } from './interpreters.js';

/** Bumped when the skeleton or the layout changes, so old recipes rebuild. */
const FORMAT = 6;
const SYSTEM_PATH = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];
const MIRRORED_TOP_LINKS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];
/** The launcher's staging mount points for a root reset (fnbox-launcher.c). */
const RESET_STAGING_DIRS = ['.fnbox-next', '.fnbox-old'];
/** The mtime of the files the skeleton writes (seconds since the epoch; 1, as Nix does). */
const SKELETON_TIME = 1;

export interface Image {
  id: string;
  name: string;
  rootfs: string;
  /** Executable path inside the image per interpreter kind. */
  interpreters: Partial<Record<'node' | 'python', { executable: string; version: string }>>;
  builtAt: string;
}

/** What ImageStore.collect() removed. */
export interface CollectedImages {
  /** Image ids whose directories went. */
  images: string[];
  recipes: number;
  /** Staging dirs of builds whose process is gone. */
  staging: number;
}

export interface ImageStoreOptions {
  /** Where built images live (may be shared between state dirs). */
  dir: string;
  /** The project's images/ directory with the definitions. */
  definitionsDir: string;
  /** Root that `copy.from` paths are relative to. */
  projectRoot: string;
}

export class ImageStore {
  private readonly building = new Map<string, Promise<Image>>();

  constructor(private readonly options: ImageStoreOptions) {
    mkdirSync(join(options.dir, 'recipes'), { recursive: true });
  }

  /** The image for a definition name, built on first use. */
  get(name: string): Promise<Image> {
    let pending = this.building.get(name);
    if (!pending) {
      pending = Promise.resolve().then(() => this.getSync(name));
      this.building.set(name, pending);
      pending.catch(() => this.building.delete(name));
    }
    return pending;
  }

  getSync(name: string): Image {
    const definition = resolveDefinition(this.options.definitionsDir, name);
    const sources = listSources(definition, this.options.projectRoot);
    const recipeFile = join(this.options.dir, 'recipes', sources.recipeHash);
    const cached = this.readRecipe(recipeFile);
    if (cached) return cached;
    return this.build(planImage(sources), recipeFile);
  }

  /**
   * Removes what no current image needs. Staging dirs of builders that are
   * gone (a build killed halfway) always go. Images and recipes other than
   * `keep` go only when this store is the directory's one user: a shared
   * dir may hold another gateway's images, with its sandboxes running on
   * them. Old images pile up otherwise: each host upgrade of node or
   * python, or a new image format, leaves the previous build behind.
   */
  collect(keep: Iterable<Image>, { exclusive }: { exclusive: boolean }): CollectedImages {
    const keptIds = new Set([...keep].map((image) => image.id));
    const collected: CollectedImages = { images: [], recipes: 0, staging: 0 };
    for (const name of readdirSync(this.options.dir)) {
      const staging = /^tmp-(\d+)-/.exec(name);
      if (staging && !processAlive(Number(staging[1]))) {
        rmSync(join(this.options.dir, name), { recursive: true, force: true });
        collected.staging++;
      } else if (exclusive && name.startsWith('sha256-') && !keptIds.has(name)) {
        rmSync(join(this.options.dir, name), { recursive: true, force: true });
        collected.images.push(name);
      }
    }
    if (!exclusive) return collected;
    const recipes = join(this.options.dir, 'recipes');
    for (const name of readdirSync(recipes)) {
      let id: unknown;
      try {
        id = (JSON.parse(readFileSync(join(recipes, name), 'utf8')) as { id?: unknown }).id;
      } catch {
        id = undefined; // unreadable or half written: useless either way
      }
      if (!name.endsWith('.tmp') && typeof id === 'string' && keptIds.has(id)) continue;
      rmSync(join(recipes, name), { force: true });
      collected.recipes++;
    }
    return collected;
  }

  /** A recipe is still good when the libraries it pulled in are unchanged. */
  private readRecipe(recipeFile: string): Image | undefined {
    if (!existsSync(recipeFile)) return undefined;
    try {
      const recipe = JSON.parse(readFileSync(recipeFile, 'utf8')) as { id: string; libraries: string[] };
      if (recipe.libraries.some((entry) => !existsSync(entry.split('\0')[0]!) || fingerprint(entry.split('\0')[0]!) !== `${entry}\n`)) return undefined;
      const meta = join(this.options.dir, recipe.id, 'image.json');
      return existsSync(meta) ? (JSON.parse(readFileSync(meta, 'utf8')) as Image) : undefined;
    } catch {
      return undefined;
    }
  }

  private build(plan: ImagePlan, recipeFile: string): Image {
    const staging = join(this.options.dir, `tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const rootfs = join(staging, 'rootfs');
    try {
      writeSkeleton(rootfs);
      for (const [source, target] of plan.files) placeFile(rootfs, source, target);
      for (const copy of plan.copies) copyTree(copy.from, join(rootfs, copy.to), projectFiles(copy.from));
      for (const tree of plan.trees) copyTree(tree.path, join(rootfs, tree.path), listFiles(tree.path, tree.exclude));
      writeLibraryCache(rootfs);
      makeReadOnly(rootfs);
      chmodSync(join(rootfs, 'tmp'), 0o1777);
      const id = `sha256-${hashTree(rootfs)}`;
      const image: Image = {
        id,
        name: plan.definition.name,
        rootfs: join(this.options.dir, id, 'rootfs'),
        interpreters: Object.fromEntries(plan.interpreters.map((i) => [i.kind, { executable: i.executable, version: i.version }])),
        builtAt: new Date().toISOString(),
      };
      writeFileSync(join(staging, 'image.json'), `${JSON.stringify(image, null, 2)}\n`);
      const final = join(this.options.dir, id);
      if (existsSync(final)) rmSync(staging, { recursive: true, force: true });
      else renameSync(staging, final);
      const libraries = [...plan.files.keys()].map((file) => fingerprint(file).trimEnd());
      writeFileSync(`${recipeFile}.tmp`, JSON.stringify({ id, libraries }));
      renameSync(`${recipeFile}.tmp`, recipeFile);
      return JSON.parse(readFileSync(join(final, 'image.json'), 'utf8')) as Image;
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw error instanceof FnboxError ? error
        : new FnboxError('Internal', `building image ${plan.definition.name} failed: ${(error as Error).message}`, { cause: error });
    }
  }
}

/** What an image is made of before the library closure: cheap to compute. */
interface ImageSources {
  definition: ResolvedDefinition;
  executables: string[];
  interpreters: InterpreterLayout[];
  trees: InterpreterLayout['trees'];
  copies: Array<{ from: string; to: string }>;
  recipeHash: string;
}

interface ImagePlan extends ImageSources {
  /** host file → path inside the image */
  files: Map<string, string>;
}

function findBinary(name: string): string | undefined {
  if (name.startsWith('/')) return existsSync(name) ? name : undefined;
  for (const dir of SYSTEM_PATH) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** A host path's place in the image: its real directory, its own name. */
function imagePathOf(hostPath: string): string {
  return join(realpathSync(dirname(hostPath)), basename(hostPath));
}

function listSources(definition: ResolvedDefinition, projectRoot: string): ImageSources {
  const executables: string[] = [];
  for (const entry of definition.binaries) {
    const optional = entry.endsWith('?');
    const name = optional ? entry.slice(0, -1) : entry;
    const found = findBinary(name);
    if (found) executables.push(found);
    else if (!optional) throw new FnboxError('HostUnsupported', `image ${definition.name} needs "${name}", which is not on this host`);
  }
  const interpreters = definition.interpreters.map(locateInterpreter);
  const trees = interpreters.flatMap((i) => i.trees);
  const copies = definition.copy.map((c) => ({ from: join(projectRoot, c.from), to: c.to }));
  const recipe = createHash('sha256');
  recipe.update(JSON.stringify({ FORMAT, definition, trees, interpreters }));
  for (const file of [...executables, ...interpreters.map((i) => i.executable)]) recipe.update(fingerprint(file));
  for (const tree of trees) for (const file of listFiles(tree.path, tree.exclude)) recipe.update(fingerprint(file));
  for (const copy of copies) for (const file of projectFiles(copy.from)) recipe.update(fingerprint(file) + readFileSync(file, 'utf8'));
  return { definition, executables, interpreters, trees, copies, recipeHash: recipe.digest('hex') };
}

function planImage(sources: ImageSources): ImagePlan {
  // Extension modules in the trees have libraries of their own.
  const extensionModules = sources.trees.flatMap((tree) => listFiles(tree.path, tree.exclude).filter((f) => f.endsWith('.so')));
  const files = new Map<string, string>();
  const closure = libraryClosure([...sources.executables, ...sources.interpreters.map((i) => i.executable), ...extensionModules]);
  for (const file of closure) if (!extensionModules.includes(file)) files.set(file, imagePathOf(file));
  return { ...sources, files };
}

function fingerprint(file: string): string {
  const st = statSync(file);
  // No inode number: the same files seen through 9p or overlay (the v2 test VM) keep their recipe.
  return `${file}\0${st.size}\0${st.mtimeMs}\n`;
}

/**
 * The project files an image copies: a host's bytecode caches left beside
 * them (python's __pycache__) are not part of the source, and would make two
 * checkouts build different images.
 */
function projectFiles(root: string): string[] {
  return listFiles(root, []).filter((file) => !file.includes('/__pycache__/'));
}

function listFiles(root: string, exclude: string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      const rel = relative(root, full);
      if (exclude.some((e) => rel === e || rel.startsWith(`${e}/`))) continue;
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) out.push(full);
    }
  };
  walk(root);
  return out.sort();
}

function writeSkeleton(rootfs: string): void {
  mkdirSync(rootfs, { recursive: true });
  for (const link of MIRRORED_TOP_LINKS) {
    try {
      if (lstatSync(`/${link}`).isSymbolicLink()) symlinkSync(readlinkSync(`/${link}`), join(rootfs, link));
    } catch {
      // not on this host
    }
  }
  for (const dir of ['proc', 'dev', 'code', 'etc', 'opt/fnbox', 'usr/bin', 'usr/lib']) mkdirSync(join(rootfs, dir), { recursive: true });
  // Where a root reset stages the fresh root and the old upper (reset_root()
  // in the launcher): made here once, not by a mkdir in every reset's
  // overlay (~45 us of its ~300).
  for (const dir of RESET_STAGING_DIRS) mkdirSync(join(rootfs, dir), { mode: 0o700 });
  mkdirSync(join(rootfs, 'tmp'));
  chmodSync(join(rootfs, 'tmp'), 0o1777);
  const etc = (name: string, text: string): void => {
    const file = join(rootfs, 'etc', name);
    writeFileSync(file, text);
    // File times are part of the image id (see hashTree): ours are fixed, so a rebuild is the same image.
    utimesSync(file, SKELETON_TIME, SKELETON_TIME);
  };
  etc('passwd', `root:x:0:0:root:/tmp:/bin/sh\nsandbox:x:${PROGRAM_UID}:${PROGRAM_GID}:fnbox sandbox:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n`);
  etc('group', `root:x:0:\nsandbox:x:${PROGRAM_GID}:\nnogroup:x:65534:\n`);
  etc('hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost\n');
  etc('nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files\n');
  etc('resolv.conf', '# no network: sandboxes have only a loopback interface\n');
}

/**
 * /etc/ld.so.cache for the image's own libraries. Without it the dynamic
 * loader probes the hwcaps and tls directories for every library (17
 * failed opens for libc alone), each a negative lookup through every layer
 * of a root that is new for each sandbox: ~0.1 ms per exec (a shell running
 * three commands in a sandbox: 7.7 → 7.0 ms and 5.5 → 5.2 ms in two paired
 * runs; python's start 12.3 → 12.0 ms). The same libraries give the same bytes. A host without glibc's ldconfig (musl,
 * whose loader reads no cache) builds its images without one.
 */
function writeLibraryCache(rootfs: string): void {
  const ldconfig = ['/sbin/ldconfig', '/usr/sbin/ldconfig'].find((path) => existsSync(path));
  if (!ldconfig) return;
  const cache = join(rootfs, 'etc', 'ld.so.cache');
  // -r: paths inside the image; -X: write the cache, change no symlink.
  const result = spawnSync(ldconfig, ['-X', '-r', rootfs], { stdio: 'ignore', timeout: 30_000 });
  if (result.status !== 0 || !existsSync(cache)) {
    rmSync(cache, { force: true });
    return;
  }
  // File times are part of the image id (see hashTree).
  utimesSync(cache, SKELETON_TIME, SKELETON_TIME);
}

function placeFile(rootfs: string, source: string, target: string): void {
  copyFile(source, join(rootfs, target));
}

/** Copies `files` (paths under `from`) to the same places under `to`. */
function copyTree(from: string, to: string, files: string[]): void {
  for (const file of files) copyFile(file, join(to, relative(from, file)));
}

/**
 * Keeps the source's times: Python checks each cached .pyc against its
 * source's mtime, and a copy stamped "now" made it recompile the whole
 * standard library it imports at every start (~85 ms of a cold start).
 */
function copyFile(source: string, destination: string): void {
  mkdirSync(dirname(destination), { recursive: true });
  copyFileSync(source, destination, fsConstants.COPYFILE_FICLONE);
  const st = statSync(source);
  chmodSync(destination, st.mode & 0o755);
  utimesSync(destination, st.atime, st.mtime);
}

/** Nothing in an image is writable, not even by its owner. */
function makeReadOnly(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) {
      makeReadOnly(full);
      chmodSync(full, 0o555);
    } else chmodSync(full, statSync(full).mode & 0o555);
  }
}

/** sha256 over every path, type, mode, content and file mtime (see copyFile), in sorted order. */
function hashTree(root: string): string {
  const hash = createHash('sha256');
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const full = join(dir, name);
      const st = lstatSync(full);
      const rel = relative(root, full);
      if (st.isSymbolicLink()) hash.update(`l ${rel} ${readlinkSync(full)}\n`);
      else if (st.isDirectory()) {
        hash.update(`d ${rel} ${(st.mode & 0o7777).toString(8)}\n`);
        walk(full);
      } else {
        hash.update(`f ${rel} ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs / 1000)} `);
        hash.update(readFileSync(full));
        hash.update('\n');
      }
    }
  };
  walk(root);
  return hash.digest('hex');
}
