// Language runtimes taken from the host: where their executable and
// standard library live, so an image can carry them.
import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { FnboxError } from '../errors.js';

export interface InterpreterLayout {
  kind: 'node' | 'python';
  /** The executable, at the same path inside the image. */
  executable: string;
  version: string;
  /** Directory trees copied whole (the python stdlib). */
  trees: Array<{ path: string; exclude: string[] }>;
}

export function locateNode(): InterpreterLayout {
  // execPath is argv[0] when /proc/self/exe cannot be read: look it up on PATH then.
  const executable = isAbsolute(process.execPath) ? process.execPath
    : (process.env.PATH ?? '').split(':').map((dir) => join(dir, process.execPath)).find((candidate) => existsSync(candidate)) ?? process.execPath;
  return { kind: 'node', executable: realpathSync(executable), version: process.version, trees: [] };
}

const PYTHON_PROBE = `import json, sys, sysconfig
p = sysconfig.get_paths()
print(json.dumps({"executable": sys.executable, "version": sys.version.split()[0], "stdlib": p["stdlib"], "platstdlib": p["platstdlib"]}))`;

// Not needed in a sandbox and large: tests, GUI toolkits, installers, third-party packages.
const PYTHON_EXCLUDES = ['test', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip', 'site-packages', 'dist-packages', 'lib2to3/tests'];

export function pythonCandidates(): string[] {
  return [process.env.FNBOX_PYTHON, '/usr/bin/python3', 'python3'].filter((c): c is string => Boolean(c));
}

export function locatePython(): InterpreterLayout | undefined {
  for (const candidate of pythonCandidates()) {
    if (candidate.startsWith('/') && !existsSync(candidate)) continue;
    try {
      const probe = JSON.parse(execFileSync(candidate, ['-c', PYTHON_PROBE], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as {
        executable: string; version: string; stdlib: string; platstdlib: string;
      };
      const trees = [...new Set([probe.stdlib, probe.platstdlib])].map((path) => ({ path: realpathSync(path), exclude: PYTHON_EXCLUDES }));
      return { kind: 'python', executable: realpathSync(probe.executable), version: probe.version, trees };
    } catch {
      // try the next candidate
    }
  }
  return undefined;
}

export function locateInterpreter(kind: 'node' | 'python'): InterpreterLayout {
  const layout = kind === 'node' ? locateNode() : locatePython();
  if (!layout) throw new FnboxError('HostUnsupported', `no ${kind} found on this host (tried ${pythonCandidates().join(', ')}); set FNBOX_PYTHON to a python3 binary`);
  return layout;
}
