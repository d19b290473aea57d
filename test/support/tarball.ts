// Builds tarballs in memory, including the malicious ones a safe unpacker
// must refuse.
import { gzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';

export type TarEntry = Partial<Header> & { name: string; content?: string | Buffer };

export async function makeTar(entries: TarEntry[], options: { gzip?: boolean } = {}): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    archive.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    archive.on('end', () => resolve());
    archive.on('error', reject);
  });
  for (const { content, ...header } of entries) {
    const body = content === undefined ? undefined : Buffer.from(content);
    await new Promise<void>((resolve, reject) => {
      const callback = (error?: Error | null): void => (error ? reject(error) : resolve());
      // A fixed mtime: the same files always make the same bytes.
      if (body) archive.entry({ type: 'file', mode: 0o644, mtime: new Date(0), ...header, size: body.length }, body, callback);
      else archive.entry({ mode: header.type === 'directory' ? 0o755 : 0o644, mtime: new Date(0), ...header }, callback);
    });
  }
  archive.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  return options.gzip ? gzipSync(tar) : tar;
}

/** A tarball holding the files of a fixture map { path: content }. */
export function filesTar(files: Record<string, string>, options: { gzip?: boolean; executable?: string[] } = {}): Promise<Buffer> {
  return makeTar(Object.entries(files).map(([name, content]) => ({ name, content, mode: options.executable?.includes(name) ? 0o755 : 0o644 })), options);
}
