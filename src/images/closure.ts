// The shared-library closure of host executables, from `ldd`.
import { execFileSync } from 'node:child_process';

/** Paths ldd prints for one file: "libc.so.6 => /lib/.../libc.so.6 (0x..)" or "/lib64/ld-linux... (0x..)". */
export function parseLddOutput(output: string): string[] {
  const paths: string[] = [];
  for (const line of output.split('\n')) {
    const arrow = line.match(/=>\s+(\/\S+)/);
    const bare = line.match(/^\s*(\/\S+)\s+\(0x/);
    const path = arrow?.[1] ?? bare?.[1];
    if (path) paths.push(path);
  }
  return paths;
}

export function sharedLibraries(file: string): string[] {
  try {
    return parseLddOutput(execFileSync('ldd', [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return []; // static executables, scripts: "not a dynamic executable"
  }
}

/** Every file the given ELF files need at run time, themselves included. */
export function libraryClosure(files: string[]): string[] {
  const all = new Set<string>(files);
  for (const file of files) for (const library of sharedLibraries(file)) all.add(library);
  return [...all];
}
