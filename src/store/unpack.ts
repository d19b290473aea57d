// Safe tarball unpacking (DESIGN.md §5): streamed (never the whole upload in
// memory), hashed on the way in, and strict about what it writes. Refused
// with InvalidFunction: absolute paths, "..", symlinks or hardlinks that
// leave the code root, paths through a symlink, device nodes, fifos,
// setuid/setgid bits, duplicates. Capped: upload size, unpacked size, entry
// count and the expansion ratio (gzip bombs).
import { createHash } from 'node:crypto';
import { constants as fs, linkSync, lstatSync, mkdirSync, symlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { FnboxError } from '../errors.js';

export interface UnpackLimits {
  /** Bytes of the upload as sent (compressed or not). */
  maxUploadBytes: number;
  /** Bytes of all files once unpacked. */
  maxUnpackedBytes: number;
  maxEntries: number;
  /** Unpacked bytes per uploaded byte, checked once past 1 MiB. */
  maxRatio: number;
}

export const DEFAULT_UNPACK_LIMITS: UnpackLimits = {
  maxUploadBytes: 64 * 1024 * 1024,
  maxUnpackedBytes: 256 * 1024 * 1024,
  maxEntries: 10_000,
  maxRatio: 100,
};

export const MANIFEST_FILE = 'fnbox.json';
const MAX_MANIFEST_BYTES = 64 * 1024;
const MAX_PATH = 1024;
const MAX_DEPTH = 32;

export interface UnpackResult {
  /** sha256 of the upload's bytes: the version id. */
  sha256: string;
  uploadBytes: number;
  unpackedBytes: number;
  entries: number;
  manifestText?: string;
}

function refuse(message: string): FnboxError {
  return new FnboxError('InvalidFunction', message);
}

/** "./a//b/" → "a/b"; refuses what could leave the root. */
export function normalizeEntryPath(name: string): string {
  if (name.includes('\0')) throw refuse(`entry name contains a NUL byte`);
  if (name.startsWith('/')) throw refuse(`absolute path "${name}" in the tarball`);
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw refuse(`path "${name}" goes up with ".."`);
  if (name.length > MAX_PATH || parts.length > MAX_DEPTH) throw refuse(`path "${name.slice(0, 80)}…" is too long or too deep`);
  return parts.join('/');
}

/** Where a link target points, relative to the root; refuses escapes. */
export function resolveLinkTarget(entry: string, target: string, kind: 'symlink' | 'hardlink'): string {
  if (target.startsWith('/')) throw refuse(`${kind} "${entry}" points to the absolute path "${target}"`);
  const base = kind === 'symlink' ? posix.dirname(entry) : '.';
  const resolved = posix.normalize(posix.join(base, target));
  if (resolved === '..' || resolved.startsWith('../')) throw refuse(`${kind} "${entry}" → "${target}" leaves the function's root`);
  return resolved;
}

class Unpacker {
  uploadBytes = 0;
  unpackedBytes = 0;
  entries = 0;
  manifestText?: string;
  private readonly seen = new Set<string>();

  constructor(private readonly root: string, private readonly limits: UnpackLimits) {}

  countUpload(length: number): void {
    this.uploadBytes += length;
    if (this.uploadBytes > this.limits.maxUploadBytes) {
      throw new FnboxError('PayloadTooLarge', `the upload exceeds ${this.limits.maxUploadBytes} bytes`);
    }
  }

  private countUnpacked(length: number): void {
    this.unpackedBytes += length;
    if (this.unpackedBytes > this.limits.maxUnpackedBytes) throw refuse(`the function unpacks to more than ${this.limits.maxUnpackedBytes} bytes`);
    if (this.unpackedBytes > 1024 * 1024 && this.unpackedBytes > this.uploadBytes * this.limits.maxRatio) {
      throw refuse(`the archive expands more than ${this.limits.maxRatio}× (a compression bomb?)`);
    }
  }

  /** Makes the parents of `path`, refusing any that is not a real directory. */
  private parents(path: string): void {
    const parts = path.split('/').slice(0, -1);
    let current = this.root;
    for (const part of parts) {
      current = `${current}/${part}`;
      const st = lstatSync(current, { throwIfNoEntry: false });
      if (!st) mkdirSync(current, { mode: 0o755 });
      else if (!st.isDirectory()) throw refuse(`path "${path}" goes through "${current.slice(this.root.length + 1)}", which is not a directory`);
    }
  }

  async entry(header: Header, body: AsyncIterable<Buffer> & { resume(): unknown }): Promise<void> {
    this.entries++;
    if (this.entries > this.limits.maxEntries) throw refuse(`the archive has more than ${this.limits.maxEntries} entries`);
    const path = normalizeEntryPath(header.name);
    const mode = header.mode ?? 0o644;
    if (mode & 0o6000) throw refuse(`"${header.name}" has the setuid or setgid bit`);
    if (path === '') {
      body.resume();
      return;
    }
    if (this.seen.has(path)) throw refuse(`"${path}" appears twice in the archive`);
    this.seen.add(path);
    const target = `${this.root}/${path}`;
    switch (header.type) {
      case 'directory':
        this.parents(`${path}/x`);
        body.resume();
        return;
      case 'file':
      case 'contiguous-file':
        this.parents(path);
        await this.writeFile(target, path, mode, body);
        return;
      case 'symlink': {
        resolveLinkTarget(path, header.linkname ?? '', 'symlink');
        this.parents(path);
        symlinkSync(header.linkname!, target);
        body.resume();
        return;
      }
      case 'link': {
        const source = resolveLinkTarget(path, normalizeEntryPath(header.linkname ?? ''), 'hardlink');
        const st = lstatSync(`${this.root}/${source}`, { throwIfNoEntry: false });
        if (!st?.isFile()) throw refuse(`hardlink "${path}" must point to a regular file earlier in the archive`);
        this.parents(path);
        linkSync(`${this.root}/${source}`, target);
        body.resume();
        return;
      }
      case 'character-device':
      case 'block-device':
        throw refuse(`device node "${path}" in the tarball`);
      case 'fifo':
        throw refuse(`fifo "${path}" in the tarball`);
      default:
        throw refuse(`"${path}" has an entry type fnbox does not accept (${header.type})`);
    }
  }

  private async writeFile(target: string, path: string, mode: number, body: AsyncIterable<Buffer>): Promise<void> {
    // O_EXCL|O_NOFOLLOW: never through a symlink, never over something already there.
    const file = await open(target, fs.O_WRONLY | fs.O_CREAT | fs.O_EXCL | fs.O_NOFOLLOW, 0o600);
    const isManifest = path === MANIFEST_FILE;
    const manifest: Buffer[] = [];
    let manifestBytes = 0;
    try {
      for await (const chunk of body) {
        this.countUnpacked(chunk.length);
        if (isManifest) {
          manifestBytes += chunk.length;
          if (manifestBytes > MAX_MANIFEST_BYTES) throw refuse(`${MANIFEST_FILE} is larger than ${MAX_MANIFEST_BYTES} bytes`);
          manifest.push(chunk);
        }
        await file.write(chunk);
      }
      // Only the owner's execute bit matters; nothing else of the archive's mode survives.
      await file.chmod(mode & 0o100 ? 0o755 : 0o644);
    } finally {
      await file.close();
    }
    if (isManifest) this.manifestText = Buffer.concat(manifest).toString('utf8');
  }
}

/**
 * Unpacks a tar or tar.gz stream into `root` (which must not exist yet).
 * On any refusal the caller removes `root`; nothing outside it is touched.
 */
export async function unpackTarball(source: Readable, root: string, limits: UnpackLimits = DEFAULT_UNPACK_LIMITS): Promise<UnpackResult> {
  mkdirSync(root, { mode: 0o755 });
  const unpacker = new Unpacker(root, limits);
  const hash = createHash('sha256');
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await iterator.next();
  const firstChunk: Buffer | undefined = first.done ? undefined : Buffer.from(first.value);
  if (!firstChunk) throw refuse('the upload is empty: send a tar or tar.gz archive');
  const gzipped = firstChunk[0] === 0x1f && firstChunk[1] === 0x8b;
  async function* counted(): AsyncGenerator<Buffer> {
    let chunk: Buffer | undefined = firstChunk;
    while (chunk) {
      unpacker.countUpload(chunk.length);
      hash.update(chunk);
      yield chunk;
      const next = await iterator.next();
      chunk = next.done ? undefined : Buffer.from(next.value);
    }
  }
  const raw = Readable.from(counted());
  const extract = tarExtract();
  const feeding = gzipped ? pipeline(raw, createGunzip(), extract) : pipeline(raw, extract);
  feeding.catch(() => {}); // reported below, once
  try {
    for await (const entry of extract) await unpacker.entry(entry.header, entry as unknown as AsyncIterable<Buffer> & { resume(): unknown });
    await feeding;
  } catch (error) {
    raw.destroy();
    extract.destroy();
    await iterator.return?.();
    if (error instanceof FnboxError) throw error;
    if ((error as { cause?: unknown }).cause instanceof FnboxError) throw (error as { cause: FnboxError }).cause;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw refuse(`the archive writes the same path twice: ${(error as Error).message}`);
    if (code === 'ELOOP') throw refuse(`the archive writes through a symlink: ${(error as Error).message}`);
    throw refuse(`not a valid tar or tar.gz archive: ${(error as Error).message}`);
  }
  if (unpacker.entries === 0) throw refuse('the archive has no entries');
  return { sha256: hash.digest('hex'), uploadBytes: unpacker.uploadBytes, unpackedBytes: unpacker.unpackedBytes, entries: unpacker.entries, manifestText: unpacker.manifestText };
}
