// Reading request bodies with a hard limit: refused as soon as the limit is
// crossed (by Content-Length, or while streaming), never buffered past it.
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { FnboxError } from '../errors.js';

/** How long a request body may go without a byte before it is cut off. */
export const BODY_IDLE_MS = 30_000;

function stalled(idleMs: number): FnboxError {
  return new FnboxError('RequestTimeout', `the request body stalled for ${idleMs / 1000} s`);
}

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
    timer = setTimeout(() => incoming.destroy(stalled(idleMs)), idleMs);
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

/**
 * The whole body of an invocation. Event-driven rather than `for await`:
 * this runs once per call on the hot path, where an async iterator and a
 * timer per chunk cost more than the rest of the request parsing.
 */
export function readBody(incoming: IncomingMessage, limitBytes: number, idleMs = BODY_IDLE_MS): Promise<Buffer> {
  const declared = Number(incoming.headers['content-length'] ?? NaN);
  if (declared > limitBytes) {
    incoming.resume();
    return Promise.reject(new FnboxError('PayloadTooLarge', `the body of ${declared} bytes exceeds the limit of ${limitBytes} bytes`, { details: { limitBytes } }));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const timer = setTimeout(() => finish(stalled(idleMs)), idleMs);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > limitBytes) {
        finish(new FnboxError('PayloadTooLarge', `the body exceeds the limit of ${limitBytes} bytes`, { details: { limitBytes } }));
        return;
      }
      chunks.push(chunk);
      timer.refresh();
    };
    const onEnd = (): void => finish();
    const onError = (error: Error): void => finish(error);
    const onClose = (): void => finish(new FnboxError('InvalidRequest', 'the client closed the connection before the body was complete'));
    function finish(error?: Error): void {
      clearTimeout(timer);
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
      if (error) {
        // Drain what is left so the connection can answer the error.
        if (!incoming.destroyed) incoming.resume();
        reject(error);
      } else {
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
      }
    }
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}
