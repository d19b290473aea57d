import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTar } from '../../test/support/tarball.js';
import { DEFAULT_UNPACK_LIMITS, normalizeEntryPath, resolveLinkTarget, unpackTarball, type UnpackLimits } from './unpack.js';

let dir: string;
let root: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fnbox-unpack-'));
  root = join(dir, 'code');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function unpack(buffer: Buffer, limits: Partial<UnpackLimits> = {}) {
  rmSync(root, { recursive: true, force: true });
  // Small chunks, as a network upload arrives.
  const chunks: Buffer[] = [];
  for (let i = 0; i < buffer.length; i += 1000) chunks.push(buffer.subarray(i, i + 1000));
  return unpackTarball(Readable.from(chunks), root, { ...DEFAULT_UNPACK_LIMITS, ...limits });
}

describe('unpackTarball', () => {
  it('unpacks files, dirs, relative symlinks and hardlinks; keeps only the execute bit; hashes the upload', async () => {
    const tar = await makeTar([
      { name: './', type: 'directory' },
      { name: 'fnbox.json', content: '{"runtime":"exec"}' },
      { name: 'bin/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o775 },
      { name: 'lib/data.txt', content: 'data', mode: 0o666 },
      { name: 'lib/link', type: 'symlink', linkname: 'data.txt' },
      { name: 'lib/hard', type: 'link', linkname: 'lib/data.txt' },
    ], { gzip: true });
    const result = await unpack(tar);
    expect(result).toMatchObject({ entries: 6, manifestText: '{"runtime":"exec"}', uploadBytes: tar.length });
    expect(result.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(join(root, 'bin/run.sh')).mode & 0o777).toBe(0o755);
    expect(statSync(join(root, 'lib/data.txt')).mode & 0o777).toBe(0o644);
    expect(readlinkSync(join(root, 'lib/link'))).toBe('data.txt');
    expect(readFileSync(join(root, 'lib/hard'), 'utf8')).toBe('data');
  });

  it.each([
    ['an absolute path', [{ name: '/etc/evil', content: 'x' }], /absolute path/],
    ['a ".." path', [{ name: 'a/../../evil', content: 'x' }], /goes up/],
    ['an escaping symlink', [{ name: 'link', type: 'symlink', linkname: '../../etc/passwd' }], /leaves the function's root/],
    ['an absolute symlink', [{ name: 'link', type: 'symlink', linkname: '/etc/passwd' }], /absolute path/],
    ['an escaping hardlink', [{ name: 'hard', type: 'link', linkname: '../outside' }], /goes up/],
    ['a hardlink to a host file', [{ name: 'hard', type: 'link', linkname: 'etc/shadow' }], /regular file earlier in the archive/],
    ['a character device', [{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }], /device node/],
    ['a block device', [{ name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 }], /device node/],
    ['a fifo', [{ name: 'pipe', type: 'fifo' }], /fifo/],
    ['a setuid binary', [{ name: 'su', content: 'x', mode: 0o4755 }], /setuid or setgid/],
    ['a setgid binary', [{ name: 'sg', content: 'x', mode: 0o2755 }], /setuid or setgid/],
    ['a write through a symlink', [{ name: 'out', type: 'symlink', linkname: '.' }, { name: 'out/x', content: 'x' }], /not a directory/],
    ['a duplicate entry', [{ name: 'a', content: 'x' }, { name: 'a', content: 'y' }], /twice/],
  ] as const)('refuses %s with InvalidFunction and writes nothing outside', async (_what, entries, message) => {
    const tar = await makeTar(entries as never);
    await expect(unpack(tar)).rejects.toMatchObject({ code: 'InvalidFunction', message: expect.stringMatching(message) });
    expect(existsSync(join(dir, 'evil'))).toBe(false);
    expect(existsSync('/evil')).toBe(false);
  });

  it('refuses a gzip bomb by its expansion ratio', async () => {
    const tar = await makeTar([{ name: 'zeros', content: Buffer.alloc(50 * 1024 * 1024) }], { gzip: true });
    expect(tar.length).toBeLessThan(200 * 1024);
    await expect(unpack(tar)).rejects.toMatchObject({ code: 'InvalidFunction', message: expect.stringMatching(/compression bomb/) });
  });

  it('caps the upload, the unpacked size and the entry count', async () => {
    const big = await makeTar([{ name: 'f', content: Buffer.alloc(200_000, 7) }]);
    await expect(unpack(big, { maxUploadBytes: 100_000 })).rejects.toMatchObject({ code: 'PayloadTooLarge' });
    await expect(unpack(big, { maxUnpackedBytes: 100_000 })).rejects.toMatchObject({ code: 'InvalidFunction', message: expect.stringMatching(/unpacks to more than/) });
    const many = await makeTar(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, content: 'x' })));
    await expect(unpack(many, { maxEntries: 10 })).rejects.toMatchObject({ code: 'InvalidFunction', message: expect.stringMatching(/more than 10 entries/) });
  });

  it('refuses garbage, an empty upload and a truncated archive', async () => {
    await expect(unpack(Buffer.from('this is not a tarball at all, just some words'.repeat(20)))).rejects.toMatchObject({ code: 'InvalidFunction' });
    await expect(unpack(Buffer.alloc(0))).rejects.toMatchObject({ code: 'InvalidFunction', message: expect.stringMatching(/empty/) });
    await expect(unpack(gzipSync(Buffer.from('garbage')))).rejects.toMatchObject({ code: 'InvalidFunction' });
    const tar = await makeTar([{ name: 'f', content: Buffer.alloc(10_000, 1) }]);
    await expect(unpack(tar.subarray(0, 3000))).rejects.toMatchObject({ code: 'InvalidFunction' });
  });

  it('normalises entry paths and link targets', () => {
    expect(normalizeEntryPath('./a//b/./c/')).toBe('a/b/c');
    expect(normalizeEntryPath('./')).toBe('');
    expect(resolveLinkTarget('a/b/link', '../c', 'symlink')).toBe('a/c');
    expect(() => resolveLinkTarget('link', '..', 'symlink')).toThrow(/leaves/);
    expect(lstatSync(dir).isDirectory()).toBe(true);
  });
});
