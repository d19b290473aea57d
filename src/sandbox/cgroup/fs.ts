// The drivers touch cgroupfs only through this interface: the real one for
// production and the kernel tests, an in-memory fake (test/support) that
// follows the kernel's documented rules, so the driver this machine cannot
// run (pure v2 here, hybrid elsewhere) is still exercised by unit tests.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir as mkdirOffLoop, rmdir as rmdirOffLoop } from 'node:fs/promises';

export interface CgroupFileHandle {
  read(): string;
  write(value: string): void;
  close(): void;
}

export interface CgroupFs {
  /** At start-up only: a sandbox's directories are made with makeDir. */
  mkdir(path: string): void;
  /**
   * Off the event loop (libuv's threads): the kernel serializes every cgroup
   * mkdir and rmdir on the machine with each other and with every process
   * moved between cgroups (cgroup_mutex), so one can wait for many others.
   */
  makeDir(path: string): Promise<void>;
  /** Off the event loop, as makeDir. */
  rmdir(path: string): Promise<void>;
  read(path: string): string;
  write(path: string, value: string): void;
  exists(path: string): boolean;
  listDirs(path: string): string[];
  /** Kept open: one pread per use; memory.peak's reset is per open file (Linux 6.12+). */
  open(path: string, mode: 'r' | 'rw'): CgroupFileHandle;
}

export const realCgroupFs: CgroupFs = {
  mkdir: (path) => mkdirSync(path),
  makeDir: (path) => mkdirOffLoop(path).then(() => {}),
  rmdir: (path) => rmdirOffLoop(path),
  read: (path) => readFileSync(path, 'utf8'),
  write: (path, value) => writeFileSync(path, value),
  exists: (path) => existsSync(path),
  listDirs: (path) => readdirSync(path, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name),
  open(path, mode) {
    const fd = openSync(path, mode === 'rw' ? 'r+' : 'r');
    let buffer = Buffer.alloc(4096);
    return {
      read: () => {
        let length = readSync(fd, buffer, 0, buffer.length, 0);
        // A long cgroup.procs: grow and read again from the start (one consistent walk).
        while (length === buffer.length) {
          buffer = Buffer.alloc(buffer.length * 2);
          length = readSync(fd, buffer, 0, buffer.length, 0);
        }
        return buffer.toString('utf8', 0, length);
      },
      write: (value) => void writeSync(fd, value),
      close: () => closeSync(fd),
    };
  },
};

export function errnoError(code: string, message: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: ${message}`) as NodeJS.ErrnoException;
  error.code = code;
  return error;
}
