// The unpacker's own process (see unpack-process.ts): started as an
// unprivileged uid with its cwd in the staging dir, it reads the upload on
// stdin, unpacks it into ./code, and prints one JSON line with the result.
import { FnboxError } from '../errors.js';
import { unpackTarball, type UnpackLimits } from './unpack.js';

const limits = JSON.parse(process.argv[2] ?? '{}') as UnpackLimits;
try {
  const result = await unpackTarball(process.stdin, 'code', limits);
  process.stdout.write(`${JSON.stringify({ ok: true, result })}\n`);
} catch (error) {
  // Only fnbox's own codes cross the process boundary; anything else is ours to fix.
  const code = error instanceof FnboxError ? error.code : 'Internal';
  process.stdout.write(`${JSON.stringify({ ok: false, error: { code, message: (error as Error).message ?? String(error) } })}\n`);
}
