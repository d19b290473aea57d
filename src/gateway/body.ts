// Reading request bodies with a hard limit: refused as soon as the limit is
// crossed (by Content-Length, or while streaming), never buffered past it.
import type { IncomingMessage } from 'node:http';
import { FnboxError } from '../errors.js';

export async function readBody(incoming: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = Number(incoming.headers['content-length'] ?? NaN);
  if (declared > limitBytes) {
    incoming.resume();
    throw new FnboxError('PayloadTooLarge', `the body of ${declared} bytes exceeds the limit of ${limitBytes} bytes`, { details: { limitBytes } });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of incoming as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limitBytes) {
      incoming.resume();
      throw new FnboxError('PayloadTooLarge', `the body exceeds the limit of ${limitBytes} bytes`, { details: { limitBytes } });
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}
