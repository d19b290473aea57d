// The drivers touch cgroupfs only through this interface: the real one for
// production and the kernel tests, an in-memory fake (test/support) that
// follows the kernel's documented rules, so the driver this machine cannot
// run (pure v2 here, hybrid elsewhere) is still exercised by unit tests.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmdirSync, writeFileSync, writeSync } from 'node:fs';

export interface CgroupFileHandle {
  read(): string;
  write(value: string): void;
  close(): void;
}

export interface CgroupFs {
  mkdir(path: string): void;
  rmdir(path: string): void;
  read(path: string): string;
  write(path: string, value: string): void;
  exists(path: string): boolean;
  listDirs(path: string): string[];
  /** Kept open: one pread per use; memory.peak's reset is per open file (Linux 6.12+). */
  open(path: string, mode: 'r' | 'rw'): CgroupFileHandle;
}

export const realCgroupFs: CgroupFs = {
  mkdir: (path) => mkdirSync(path),
  rmdir: (path) => rmdirSync(path),
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
