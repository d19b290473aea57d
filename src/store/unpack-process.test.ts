import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTar } from '../../test/support/tarball.js';
import { DEFAULT_UNPACK_LIMITS } from './unpack.js';
import { UNPACK_UID, unpackUnprivileged } from './unpack-process.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fnbox-unpack-proc-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Yields the tarball in pieces, slowly, so the unpacker can be observed while it works. */
async function* slowly(buffer: Buffer): AsyncGenerator<Buffer> {
  for (let i = 0; i < buffer.length; i += 512) {
    yield buffer.subarray(i, i + 512);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Uids of this test process's own unpack workers (other test files may run theirs meanwhile). */
function unpackerUids(): number[] {
  const uids: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('unpack-worker.js')) continue;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (Number(status.match(/^PPid:\s+(\d+)/m)![1]) !== process.pid) continue;
      uids.push(Number(status.match(/^Uid:\s+(\d+)/m)![1]));
    } catch {
      // gone
    }
  }
  return uids;
}

describe('unpackUnprivileged', () => {
  it('parses the upload as nobody and hands the files to root', async () => {
    const tar = await makeTar([{ name: 'fnbox.json', content: '{"runtime":"node"}' }, { name: 'lib/a.txt', content: 'x'.repeat(3000) }]);
    const staging = join(dir, 'staging');
    await import('node:fs').then((fs) => fs.mkdirSync(staging, { mode: 0o700 }));
    const running = unpackUnprivileged(Readable.from(slowly(tar)), staging, DEFAULT_UNPACK_LIMITS);
    // The worker loads its code as root, then drops before reading the upload.
    let seen: number[] = [];
    for (let i = 0; i < 100 && !seen.includes(UNPACK_UID); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      seen = unpackerUids();
    }
    const result = await running;
    expect(seen).toEqual([UNPACK_UID]);
    expect(result).toMatchObject({ entries: 2, manifestText: '{"runtime":"node"}' });
    for (const path of ['code', 'code/fnbox.json', 'code/lib', 'code/lib/a.txt']) expect(statSync(join(staging, path)).uid, path).toBe(0);
    expect(statSync(staging).uid).toBe(0);
  });

  it('passes the unpacker\'s typed refusals through', async () => {
    const staging = join(dir, 'staging');
    await import('node:fs').then((fs) => fs.mkdirSync(staging, { mode: 0o700 }));
    await expect(unpackUnprivileged(Readable.from([await makeTar([{ name: '../evil', content: 'x' }])]), staging, DEFAULT_UNPACK_LIMITS))
      .rejects.toMatchObject({ code: 'InvalidFunction', message: expect.stringContaining('goes up') });
    const second = join(dir, 'second');
    await import('node:fs').then((fs) => fs.mkdirSync(second, { mode: 0o700 }));
    await expect(unpackUnprivileged(Readable.from([Buffer.alloc(2048, 1)]), second, { ...DEFAULT_UNPACK_LIMITS, maxUploadBytes: 1000 }))
      .rejects.toMatchObject({ code: 'PayloadTooLarge' });
  });
});
