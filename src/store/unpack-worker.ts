// The unpacker's own process (see unpack-process.ts): started with its cwd
// in the staging dir, it loads its code, drops to an unprivileged uid, and
// only then reads the upload on stdin, unpacks it into ./code and prints one
// JSON line with the result.
import { FnboxError } from '../errors.js';
import { unpackTarball, type UnpackLimits } from './unpack.js';

const limits = JSON.parse(process.argv[2] ?? '{}') as UnpackLimits;
const uid = Number(process.argv[3] ?? 65534);
try {
  // Code first (the project may sit in a directory only root can enter), privileges second.
  process.setgroups?.([]);
  process.setgid?.(uid);
  process.setuid?.(uid);
  if (process.getuid?.() !== uid) throw new FnboxError('Internal', `the unpacker could not drop to uid ${uid}`);

  const result = await unpackTarball(process.stdin, 'code', limits);
  process.stdout.write(`${JSON.stringify({ ok: true, result })}\n`);
} catch (error) {
  // Only fnbox's own codes cross the process boundary; anything else is ours to fix.
  const code = error instanceof FnboxError ? error.code : 'Internal';
  process.stdout.write(`${JSON.stringify({ ok: false, error: { code, message: (error as Error).message ?? String(error) } })}\n`);
}
