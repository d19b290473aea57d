// Reading request bodies with a hard limit: refused as soon as the limit is
// crossed (by Content-Length, or while streaming), never buffered past it.
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { FnboxError } from '../errors.js';

/** How long a request body may go without a byte before it is cut off. */
export const BODY_IDLE_MS = 30_000;

/**
 * Cuts off a body that stops arriving (a slow-loris upload): each chunk
 * re-arms the timer; silence past `idleMs` destroys the stream with 408.
 * Returns the chunks as a stream of its own, so nothing is consumed early.
 */
export function guardIdle(incoming: IncomingMessage, idleMs = BODY_IDLE_MS): Readable {
  return Readable.from(idleGuarded(incoming, idleMs));
}

async function* idleGuarded(incoming: IncomingMessage, idleMs: number): AsyncGenerator<Buffer> {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => incoming.destroy(new FnboxError('RequestTimeout', `the request body stalled for ${idleMs / 1000} s`)), idleMs);
    timer.unref();
  };
  try {
    arm();
    for await (const chunk of incoming as AsyncIterable<Buffer>) {
      arm();
      yield chunk;
    }
  } finally {
    clearTimeout(timer);
  }
}

export async function readBody(incoming: IncomingMessage, limitBytes: number, idleMs = BODY_IDLE_MS): Promise<Buffer> {
  const declared = Number(incoming.headers['content-length'] ?? NaN);
  if (declared > limitBytes) {
    incoming.resume();
    throw new FnboxError('PayloadTooLarge', `the body of ${declared} bytes exceeds the limit of ${limitBytes} bytes`, { details: { limitBytes } });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of idleGuarded(incoming, idleMs)) {
    total += chunk.length;
    if (total > limitBytes) {
      incoming.resume();
      throw new FnboxError('PayloadTooLarge', `the body exceeds the limit of ${limitBytes} bytes`, { details: { limitBytes } });
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}
