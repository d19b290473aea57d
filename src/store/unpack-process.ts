// Least privilege for uploads: the tarball is parsed and written by a
// separate process that drops to an unprivileged uid (nobody) before it
// reads a byte; its only writable place of ours is the staging dir (its
// cwd, entered before the drop; every parent is 0700 root). A bug in tar
// parsing then has nobody's rights, not root's. The files are handed to
// root afterwards.
import { spawn } from 'node:child_process';
import { chownSync, lchownSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FnboxError, type ErrorCode } from '../errors.js';
import { PROJECT_ROOT } from '../paths.js';
import type { UnpackLimits, UnpackResult } from './unpack.js';

/** What the gateway keeps of the unpacker's stdout and stderr each. */
const UNPACKER_OUTPUT_CAP = 64 * 1024;

export const UNPACK_UID = 65534;
export const UNPACK_WORKER = join(PROJECT_ROOT, 'dist', 'src', 'store', 'unpack-worker.js');

function chownTree(dir: string, uid: number, gid: number): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    lchownSync(full, uid, gid);
    if (entry.isDirectory()) chownTree(full, uid, gid);
  }
}

/** Unpacks `source` into `<staging>/code` from an unprivileged process. */
export async function unpackUnprivileged(source: Readable, staging: string, limits: UnpackLimits): Promise<UnpackResult> {
  chownSync(staging, UNPACK_UID, UNPACK_UID);
  // Spawned as root: the project may live where only root can enter; the worker drops itself.
  const child = spawn(process.execPath, [UNPACK_WORKER, JSON.stringify(limits), String(UNPACK_UID)], {
    cwd: staging,
    env: {},
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  let errors = '';
  // Its answer is one short JSON line: a worker that says more is not heard past the cap.
  child.stdout.on('data', (chunk: Buffer) => {
    if (output.length < UNPACKER_OUTPUT_CAP) output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    if (errors.length < UNPACKER_OUTPUT_CAP) errors += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  child.stdin.on('error', () => {}); // the worker may stop reading once it refuses the upload
  let feedError: unknown;
  try {
    await pipeline(source, child.stdin);
  } catch (error) {
    feedError = error;
    child.stdin.destroy();
  }
  const code = await exited;
  chownSync(staging, 0, 0);
  let reply: { ok: true; result: UnpackResult } | { ok: false; error: { code: ErrorCode; message: string } } | undefined;
  try {
    reply = JSON.parse(output.trim().split('\n').pop() ?? '');
  } catch {
    reply = undefined;
  }
  if (feedError instanceof FnboxError) throw feedError;
  if (!reply) {
    throw new FnboxError('Internal', `the unpacker exited (${code}) without an answer: ${errors.trim().slice(-300) || (feedError as Error | undefined)?.message || 'no output'}`);
  }
  if (!reply.ok) throw new FnboxError(reply.error.code, reply.error.message);
  chownTree(join(staging, 'code'), 0, 0);
  chownSync(join(staging, 'code'), 0, 0);
  return reply.result;
}
