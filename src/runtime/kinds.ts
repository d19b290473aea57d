// The runtimes fnbox ships (runtimes/<name>/): which image each runs on and
// how its process is started inside the sandbox.
import { FnboxError } from '../errors.js';
import type { Image } from '../images/index.js';

export const RUNTIME_KINDS = ['node', 'python', 'exec'] as const;
export type RuntimeKind = (typeof RUNTIME_KINDS)[number];

export interface RuntimeLaunch {
  image: string;
  argv(image: Image, memoryMb: number): string[];
  env: Record<string, string>;
}

function interpreter(image: Image, kind: 'node' | 'python'): string {
  const found = image.interpreters[kind]?.executable;
  if (!found) throw new FnboxError('HostUnsupported', `image ${image.name} has no ${kind}`);
  return found;
}

/** V8 collects garbage before the cgroup's OOM killer has to step in. */
function nodeHeapFlag(memoryMb: number): string {
  return `--max-old-space-size=${Math.max(16, Math.floor(memoryMb * 0.75))}`;
}

export const RUNTIMES: Record<RuntimeKind, RuntimeLaunch> = {
  node: {
    image: 'node',
    argv: (image, memoryMb) => [interpreter(image, 'node'), nodeHeapFlag(memoryMb), '/opt/fnbox/runtime/bootstrap.mjs'],
    env: {},
  },
  python: {
    image: 'python',
    // -S: no site import (faster, no user site dirs); -B: never write .pyc into the root.
    argv: (image) => [interpreter(image, 'python'), '-S', '-B', '/opt/fnbox/runtime/bootstrap.py'],
    env: { PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' },
  },
  exec: {
    image: 'exec',
    argv: (image, memoryMb) => [interpreter(image, 'node'), nodeHeapFlag(Math.min(memoryMb, 64)), '/opt/fnbox/exec-runtime/bootstrap.mjs'],
    env: {},
  },
};
