// Packs a directory into a deterministic tar.gz (sorted entries, fixed
// times and owners): packing the same files twice gives the same bytes, so
// redeploying an unchanged directory is a no-op.
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

const EPOCH = new Date(0);
const SKIP = new Set(['node_modules/.cache', '.git']);

export async function packDirectory(root: string): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  const finished = new Promise<void>((resolve, reject) => {
    archive.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    archive.on('end', () => resolve());
    archive.on('error', reject);
  });
  const add = (header: Parameters<typeof archive.entry>[0], body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (error?: Error | null): void => (error ? reject(error) : resolve());
      if (body) archive.entry(header, body, done);
      else archive.entry(header, done);
    });
  const walk = async (dir: string): Promise<void> => {
    for (const name of readdirSync(dir).sort()) {
      const full = join(dir, name);
      const path = relative(root, full);
      if (SKIP.has(path)) continue;
      const st = lstatSync(full);
      const common = { name: path, mtime: EPOCH, uid: 0, gid: 0, uname: '', gname: '' };
      if (st.isDirectory()) {
        await add({ ...common, name: `${path}/`, type: 'directory', mode: 0o755 });
        await walk(full);
      } else if (st.isSymbolicLink()) await add({ ...common, type: 'symlink', linkname: readlinkSync(full), mode: 0o777 });
      else if (st.isFile()) await add({ ...common, type: 'file', mode: st.mode & 0o100 ? 0o755 : 0o644, size: st.size }, readFileSync(full));
    }
  };
  await walk(root);
  archive.finalize();
  await finished;
  return gzipSync(Buffer.concat(chunks), { level: 9 });
}
