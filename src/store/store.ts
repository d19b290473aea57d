// The durable function store. Layout under <state>/functions/<name>/:
//
//   versions/<sha256>/code/...   unpacked code, one dir per distinct tarball (a lowerdir)
//   function.json                the active deployment and recent history
//   .staging-*                   an upload in progress (swept at start)
//
// Versions are content-addressed by the tarball's sha256; the active
// deployment switches by an atomic rename of function.json, so a crash at
// any point leaves either the old or the new version serving.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FnboxError } from '../errors.js';
import { FUNCTION_NAME, manifestFromQuery, parseManifest, type Manifest } from './manifest.js';
import { DEFAULT_UNPACK_LIMITS, type UnpackLimits } from './unpack.js';
import { unpackUnprivileged } from './unpack-process.js';

export interface Deployment {
  /** sha256 of the uploaded tarball. */
  version: string;
  /** The version plus its configuration: what a pool serves. */
  revision: string;
  manifest: Manifest;
  deployedAt: string;
  uploadBytes: number;
  unpackedBytes: number;
  entries: number;
}

export interface StoredFunction {
  name: string;
  active: Deployment;
  /** Newest first, the active one included. */
  history: Deployment[];
}

export interface DeployOutcome {
  fn: StoredFunction;
  deployment: Deployment;
  /** False when the same bytes and configuration were already active. */
  created: boolean;
}

const HISTORY = 10;

export function checkFunctionName(name: string): void {
  if (!FUNCTION_NAME.test(name)) {
    throw new FnboxError('InvalidFunction', `function name "${name.slice(0, 80)}" must be 1-63 lowercase letters, digits, - or _, starting with a letter or digit`);
  }
}

function revisionOf(version: string, manifest: Manifest): string {
  return createHash('sha256').update(version).update(JSON.stringify(manifest)).digest('hex').slice(0, 16);
}

/** Write-then-rename, with fsyncs: the file is the old one or the new one, never half. */
function writeAtomically(path: string, text: string): void {
  const temporary = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  writeFileSync(temporary, text);
  const fd = openSync(temporary, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(temporary, path);
  const dir = openSync(join(path, '..'), 'r');
  fsyncSync(dir);
  closeSync(dir);
}

export class FunctionStore {
  private readonly root: string;
  private readonly locks = new Map<string, Promise<unknown>>();
  /** function.json as last written or read: the invoke path never touches the disk. */
  private readonly cache = new Map<string, StoredFunction | null>();

  constructor(stateDir: string, private readonly limits: UnpackLimits = DEFAULT_UNPACK_LIMITS) {
    this.root = join(stateDir, 'functions');
    if (this.root.includes(':') || this.root.includes(',')) {
      throw new FnboxError('HostUnsupported', `the state dir ${stateDir} must not contain ':' or ',' (OverlayFS option syntax)`);
    }
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    this.sweep();
  }

  /** Uploads interrupted by a crash leave staging dirs: remove them. */
  private sweep(): void {
    for (const name of readdirSync(this.root)) {
      const dir = join(this.root, name);
      for (const entry of readdirSync(dir)) if (entry.startsWith('.staging-') || entry.includes('.tmp-')) rmSync(join(dir, entry), { recursive: true, force: true });
      if (!existsSync(join(dir, 'function.json'))) rmSync(dir, { recursive: true, force: true });
    }
  }

  list(): StoredFunction[] {
    return readdirSync(this.root).sort().map((name) => this.get(name)).filter((fn): fn is StoredFunction => fn !== undefined);
  }

  /** Like get(), but a missing function is FunctionNotFound. */
  require(name: string): StoredFunction {
    const fn = this.get(name);
    if (!fn) throw new FnboxError('FunctionNotFound', `no function named "${name}"`);
    return fn;
  }

  get(name: string): StoredFunction | undefined {
    const cached = this.cache.get(name);
    if (cached !== undefined) return cached ?? undefined;
    if (!FUNCTION_NAME.test(name)) return undefined;
    let fn: StoredFunction | null = null;
    try {
      fn = JSON.parse(readFileSync(join(this.root, name, 'function.json'), 'utf8')) as StoredFunction;
    } catch {
      fn = null;
    }
    // Misses are not cached: names are unbounded, and a miss costs one failed open.
    if (fn) this.cache.set(name, fn);
    return fn ?? undefined;
  }

  /** The lowerdir holding `code/` for a version. */
  codeLayer(name: string, version: string): string {
    return join(this.root, name, 'versions', version);
  }

  /** Serialises operations on one function. */
  private exclusive<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(work);
    this.locks.set(name, next);
    void next.catch(() => {}).finally(() => {
      if (this.locks.get(name) === next) this.locks.delete(name);
    });
    return next;
  }

  /**
   * Unpacks and activates a new deployment. `validate` runs before the
   * switch (the gateway boots it once to catch InitError); if anything
   * fails, the previous deployment keeps serving and no file is left.
   */
  deploy(name: string, body: Readable, query: Record<string, string>, validate?: (deployment: Deployment, codeLayer: string) => Promise<void>): Promise<DeployOutcome> {
    checkFunctionName(name);
    const overrides = manifestFromQuery(query);
    return this.exclusive(name, async () => {
      const dir = join(this.root, name);
      mkdirSync(join(dir, 'versions'), { recursive: true });
      const staging = join(dir, `.staging-${randomBytes(6).toString('hex')}`);
      mkdirSync(staging);
      let newVersionDir: string | undefined;
      try {
        const unpacked = await unpackUnprivileged(body, staging, this.limits);
        const manifest = parseManifest(unpacked.manifestText, overrides);
        const versionDir = this.codeLayer(name, unpacked.sha256);
        if (existsSync(versionDir)) rmSync(staging, { recursive: true, force: true });
        else {
          renameSync(staging, versionDir);
          newVersionDir = versionDir;
        }
        const deployment: Deployment = {
          version: unpacked.sha256,
          revision: revisionOf(unpacked.sha256, manifest),
          manifest,
          deployedAt: new Date().toISOString(),
          uploadBytes: unpacked.uploadBytes,
          unpackedBytes: unpacked.unpackedBytes,
          entries: unpacked.entries,
        };
        const current = this.get(name);
        if (current?.active.revision === deployment.revision) return { fn: current, deployment: current.active, created: false };
        await validate?.(deployment, versionDir);
        const history = [deployment, ...(current?.history ?? []).filter((d) => d.revision !== deployment.revision)].slice(0, HISTORY);
        const fn: StoredFunction = { name, active: deployment, history };
        writeAtomically(join(dir, 'function.json'), `${JSON.stringify(fn, null, 2)}\n`);
        this.cache.set(name, fn);
        newVersionDir = undefined;
        this.collect(name, history);
        return { fn, deployment, created: true };
      } catch (error) {
        rmSync(staging, { recursive: true, force: true });
        if (newVersionDir) rmSync(newVersionDir, { recursive: true, force: true });
        if (!this.get(name)) rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    });
  }

  /** Removes code no deployment in the history refers to. */
  private collect(name: string, history: Deployment[]): void {
    const keep = new Set(history.map((d) => d.version));
    const versions = join(this.root, name, 'versions');
    for (const version of readdirSync(versions)) if (!keep.has(version)) rmSync(join(versions, version), { recursive: true, force: true });
  }

  /** Removes a function and all its versions (its sandboxes must be gone). */
  delete(name: string): Promise<boolean> {
    return this.exclusive(name, async () => {
      if (!this.get(name)) return false;
      const dir = join(this.root, name);
      this.cache.delete(name);
      // Rename first: a crash mid-removal leaves no half function behind.
      const doomed = join(this.root, `.deleting-${name}-${randomBytes(4).toString('hex')}`);
      renameSync(dir, doomed);
      rmSync(doomed, { recursive: true, force: true });
      return true;
    });
  }
}
