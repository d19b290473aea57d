// The invocation channel: length-prefixed frames over the socket the
// sandbox gets as fd 3. A frame is
//
//   u32 BE header length | u32 BE body length | header (JSON, small) | body (raw bytes)
//
// so bodies are never escaped or base64'd on the hot path. The runtimes in
// runtimes/<name>/ implement the same framing in their own language.

export const FRAME_PREFIX = 8;
/** Headers are metadata only; anything bigger is a broken or hostile peer. */
export const MAX_HEADER_BYTES = 256 * 1024;

export type Pairs = Array<[string, string]>;

/** Host → runtime. */
export interface InvokeHeader {
  k: 'invoke';
  id: string;
  /** Epoch milliseconds by which the call must have answered. */
  deadline: number;
  method: string;
  url: string;
  headers: Pairs;
  /**
   * Root swaps the runtime must have seen announced on its gate fd (fd 4)
   * before it acts on this call: the call may be sent while the previous
   * call's root reset is still under way (src/sandbox/spec.ts, GATE_FD).
   */
  gate: number;
}

/** Host → spare runtime, once: the function it now serves (see Worker.adopt). */
export interface AdoptHeader {
  k: 'adopt';
  /** What the FNBOX_* variables say to a runtime started for one function. */
  settings: Record<string, string>;
  /** The function's environment variables. */
  env: Record<string, string>;
}

/** Runtime → host. */
export type RuntimeHeader =
  | { k: 'ready'; runtime: string; version: string; spare?: boolean }
  | { k: 'init_error'; message: string; stack?: string }
  | { k: 'log'; id: string; stream: 'stdout' | 'stderr'; truncated?: number }
  | { k: 'result'; id: string; status: number; headers: Pairs }
  | { k: 'error'; id: string; type: 'Unhandled'; message: string; stack?: string; name?: string };

/**
 * The runtime shares its process with the function, so whatever arrives on
 * the channel may have been written by the function itself: every header is
 * checked before the host acts on it.
 */
export class ProtocolError extends Error {}

const isString = (value: unknown): value is string => typeof value === 'string';
const isOptionalString = (value: unknown): boolean => value === undefined || isString(value);
const isPairs = (value: unknown): value is Pairs =>
  Array.isArray(value) && value.every((pair) => Array.isArray(pair) && pair.length === 2 && isString(pair[0]) && isString(pair[1]));

/** Each kind's shape, as the error message states it. */
const RUNTIME_FRAMES: Record<RuntimeHeader['k'], { shape: string; valid: (h: Record<string, unknown>) => boolean }> = {
  ready: { shape: 'runtime and version (strings), spare (boolean, optional)', valid: (h) => isString(h.runtime) && isString(h.version) && (h.spare === undefined || typeof h.spare === 'boolean') },
  init_error: { shape: 'message (string), stack (string, optional)', valid: (h) => isString(h.message) && isOptionalString(h.stack) },
  log: {
    shape: 'id (string), stream ("stdout" or "stderr"), truncated (a count of bytes, optional)',
    valid: (h) => isString(h.id) && (h.stream === 'stdout' || h.stream === 'stderr') && (h.truncated === undefined || (Number.isSafeInteger(h.truncated) && (h.truncated as number) >= 0)),
  },
  result: {
    // Any number: one HTTP cannot carry is the function's mistake, answered 502 by the gateway.
    shape: 'id (string), status (a number), headers ([name, value] string pairs)',
    valid: (h) => isString(h.id) && typeof h.status === 'number' && Number.isFinite(h.status) && isPairs(h.headers),
  },
  error: {
    shape: 'id (string), type "Unhandled", message (string), name and stack (strings, optional)',
    valid: (h) => isString(h.id) && h.type === 'Unhandled' && isString(h.message) && isOptionalString(h.name) && isOptionalString(h.stack),
  },
};

/** A runtime's frame header as the types promise it, or a ProtocolError naming what is wrong. */
export function parseRuntimeHeader(value: unknown): RuntimeHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError('a frame header must be a JSON object');
  const header = value as Record<string, unknown>;
  const kind = isString(header.k) && Object.hasOwn(RUNTIME_FRAMES, header.k) ? RUNTIME_FRAMES[header.k as RuntimeHeader['k']] : undefined;
  if (!kind) throw new ProtocolError(`unknown frame kind ${JSON.stringify(header.k) ?? 'undefined'} (expected ${Object.keys(RUNTIME_FRAMES).join(', ')})`);
  if (!kind.valid(header)) throw new ProtocolError(`a frame of kind "${header.k as string}" needs ${kind.shape}`);
  return header as unknown as RuntimeHeader;
}

export interface Frame<H = unknown> {
  header: H;
  body: Buffer;
}

/** Bodies up to this size are copied into one buffer: one write beats three. */
const COALESCE_BYTES = 64 * 1024;

export function encodeFrame(header: object, body: Buffer = EMPTY): Buffer[] {
  const json = JSON.stringify(header);
  const jsonLength = Buffer.byteLength(json);
  if (body.length <= COALESCE_BYTES) {
    const frame = Buffer.allocUnsafe(FRAME_PREFIX + jsonLength + body.length);
    frame.writeUInt32BE(jsonLength, 0);
    frame.writeUInt32BE(body.length, 4);
    frame.write(json, FRAME_PREFIX, 'utf8');
    body.copy(frame, FRAME_PREFIX + jsonLength);
    return [frame];
  }
  const prefix = Buffer.allocUnsafe(FRAME_PREFIX + jsonLength);
  prefix.writeUInt32BE(jsonLength, 0);
  prefix.writeUInt32BE(body.length, 4);
  prefix.write(json, FRAME_PREFIX, 'utf8');
  return [prefix, body];
}

const EMPTY = Buffer.alloc(0);

export class FrameTooLargeError extends Error {
  constructor(readonly part: 'header' | 'body', readonly size: number, readonly limit: number) {
    super(`frame ${part} of ${size} bytes exceeds the limit of ${limit}`);
  }
}

/**
 * Incremental decoder: push chunks, get whole frames. Keeps chunks in a
 * list until a frame is complete, so a multi-MiB body costs one copy.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  /** Where the unread bytes start in chunks[0]: frames are read in place, not sliced off one by one. */
  private offset = 0;
  /** Unread bytes in all chunks. */
  private buffered = 0;

  /** Raised when a spare runtime is adopted by a function with its own limits. */
  constructor(public maxBodyBytes: number) {}

  /**
   * Adds a chunk (none: only continue) and returns up to `limit` whole
   * frames; the rest stay buffered for the next call.
   */
  push(chunk?: Buffer, limit = Infinity): Frame[] {
    if (chunk) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    while (frames.length < limit && this.buffered >= FRAME_PREFIX) {
      let first = this.contiguous(FRAME_PREFIX);
      const headerLength = first.readUInt32BE(this.offset);
      const bodyLength = first.readUInt32BE(this.offset + 4);
      if (headerLength > MAX_HEADER_BYTES) throw new FrameTooLargeError('header', headerLength, MAX_HEADER_BYTES);
      if (bodyLength > this.maxBodyBytes) throw new FrameTooLargeError('body', bodyLength, this.maxBodyBytes);
      const total = FRAME_PREFIX + headerLength + bodyLength;
      // Join only once the whole frame is here: a big body costs one copy.
      if (this.buffered < total) break;
      first = this.contiguous(total);
      const headerStart = this.offset + FRAME_PREFIX;
      const bodyStart = headerStart + headerLength;
      let header: unknown;
      try {
        header = JSON.parse(first.toString('utf8', headerStart, bodyStart));
      } catch (error) {
        throw new ProtocolError(`a frame header is not JSON: ${(error as Error).message}`);
      }
      frames.push({ header, body: bodyLength === 0 ? EMPTY : first.subarray(bodyStart, bodyStart + bodyLength) });
      this.offset += total;
      this.buffered -= total;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    return frames;
  }

  /** chunks[0], holding at least `length` unread bytes from the offset on (joined when they span chunks). */
  private contiguous(length: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.offset >= length) return first;
    const joined = Buffer.concat([first.subarray(this.offset), ...this.chunks.slice(1)]);
    this.chunks = [joined];
    this.offset = 0;
    return joined;
  }
}
