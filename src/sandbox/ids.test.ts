import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IdRanges, REUSE_AFTER } from './ids.js';
import { ID_RANGE } from './spec.js';

const BASE = 100_000_000;
let lockDir: string;

beforeEach(() => {
  lockDir = mkdtempSync(join(tmpdir(), 'fnbox-ids-'));
});
afterEach(() => rmSync(lockDir, { recursive: true, force: true }));

const slotOf = (hostIdBase: number): number => (hostIdBase - BASE) / ID_RANGE;
const lockFiles = (): string[] => readdirSync(lockDir).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));

describe('IdRanges', () => {
  it('gives live sandboxes distinct ranges, each claimed by a lock file naming this process', () => {
    const ids = new IdRanges({ base: BASE, slots: 1024, lockDir });
    const bases = Array.from({ length: 10 }, () => ids.acquire());
    expect(new Set(bases).size).toBe(10);
    for (const base of bases) {
      expect((base - BASE) % ID_RANGE).toBe(0);
      expect(readFileSync(join(lockDir, String(slotOf(base))), 'utf8')).toBe(String(process.pid));
    }
  });

  it(`hands a released range out again only after ${REUSE_AFTER} later releases, keeping its lock file meanwhile`, () => {
    const ids = new IdRanges({ base: BASE, slots: 1024, lockDir });
    const first = ids.acquire();
    ids.release(first);
    ids.release(first); // twice is once
    expect(lockFiles()).toContain(String(slotOf(first)));
    const handedOut: number[] = [];
    for (let i = 0; i < REUSE_AFTER; i++) {
      const base = ids.acquire();
      handedOut.push(base);
      ids.release(base);
    }
    expect(handedOut).not.toContain(first);
    expect(new Set(handedOut).size).toBe(REUSE_AFTER);
    // Now the oldest release comes back, and no new lock file is made for it.
    const files = lockFiles();
    expect(ids.acquire()).toBe(first);
    expect(lockFiles()).toEqual(files);
    expect(ids.held).toBe(REUSE_AFTER + 1);
  });

  it('gives every lock file back on releaseAll, in use or waiting', () => {
    const ids = new IdRanges({ base: BASE, slots: 1024, lockDir });
    const inUse = ids.acquire();
    ids.release(ids.acquire());
    expect(lockFiles()).toHaveLength(2);
    ids.releaseAll();
    expect(lockFiles()).toEqual([]);
    expect(ids.held).toBe(0);
    ids.release(inUse); // after releaseAll: nothing to give back, nothing recreated
    expect(lockFiles()).toEqual([]);
  });

  it('never hands out a range another live process holds, even one it holds only for reuse', () => {
    const slots = 4;
    const a = new IdRanges({ base: BASE, slots, lockDir });
    const b = new IdRanges({ base: BASE, slots, lockDir });
    const heldByA = [a.acquire(), a.acquire()];
    a.release(heldByA[0]!);
    // A live process's lock file (this test's own pid): b must skip both.
    const fromB = [b.acquire(), b.acquire()];
    expect(fromB.filter((base) => heldByA.includes(base))).toEqual([]);
    expect(() => b.acquire()).toThrow(/host uid ranges are in use/);
  });

  it('sweeps at start the lock files of processes that are gone (a SIGKILLed gateway), and only those', () => {
    const dead = '2147483646'; // no such pid
    writeFileSync(join(lockDir, '5'), dead);
    writeFileSync(join(lockDir, '6'), String(process.pid)); // a live holder
    writeFileSync(join(lockDir, '7'), ''); // being written by its claimer
    writeFileSync(join(lockDir, `8.stale-${dead}`), dead); // a remover died between rename and unlink
    writeFileSync(join(lockDir, `9.stale-${process.pid}`), dead); // a live remover's, about to unlink it
    const ids = new IdRanges({ base: BASE, slots: 1024, lockDir });
    expect(ids.swept).toBe(2);
    expect(lockFiles()).toEqual(['6', '7', `9.stale-${process.pid}`]);
  });

  it('takes over the lock file of a process that is gone', () => {
    const ids = new IdRanges({ base: BASE, slots: 1, lockDir });
    // Left after this start swept (by a gateway that died since).
    writeFileSync(join(lockDir, '0'), '2147483646'); // no such pid
    expect(ids.acquire()).toBe(BASE);
    expect(readFileSync(join(lockDir, '0'), 'utf8')).toBe(String(process.pid));
  });
});
