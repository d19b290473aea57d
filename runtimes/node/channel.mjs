// The invocation channel as seen from inside a sandbox (node and exec
// runtimes): fd 3, frames of u32 BE header length, u32 BE body length,
// JSON header, raw body. The host side is src/runtime/protocol.ts.
import { readSync } from 'node:fs';
import net from 'node:net';

export const channel = new net.Socket({ fd: 3, readable: true, writable: true });

// fd 4, the gate: the sandbox's monitor writes a byte to it each time it has
// given this process a fresh root. A call may be sent while the previous
// call's root is still being swapped; its header says how many swaps must
// have been announced before it runs ("gate").
const GATE_FD = 4;
const gateBytes = Buffer.alloc(64);
let swapsSeen = 0;

/** Blocks until `swaps` root swaps were announced: nothing else should run before the call's root is there. */
function passGate(swaps) {
  while (swapsSeen < swaps) {
    let got;
    try {
      got = readSync(GATE_FD, gateBytes, 0, Math.min(gateBytes.length, swaps - swapsSeen), null);
    } catch (error) {
      if (error.code === 'EINTR' || error.code === 'EAGAIN') continue;
      throw error;
    }
    if (got === 0) process.exit(0); // the monitor is gone, and the sandbox with it
    swapsSeen += got;
  }
}

/** Small frames go out as one buffer: one write beats three. */
export function send(header, body) {
  const json = JSON.stringify(header);
  const jsonLength = Buffer.byteLength(json);
  const bodyLength = body ? body.length : 0;
  const inline = bodyLength <= 65536;
  const frame = Buffer.allocUnsafe(8 + jsonLength + (inline ? bodyLength : 0));
  frame.writeUInt32BE(jsonLength, 0);
  frame.writeUInt32BE(bodyLength, 4);
  frame.write(json, 8, 'utf8');
  if (inline) {
    if (bodyLength) body.copy(frame, 8 + jsonLength);
    channel.write(frame);
  } else {
    channel.cork();
    channel.write(frame);
    channel.write(body);
    channel.uncork();
  }
}

/** Calls handle(header, body) for each frame, one call at a time; exits when the host closes. */
export function serve(handle) {
  let chunks = [];
  let buffered = 0;
  let queue = Promise.resolve();
  channel.on('data', (chunk) => {
    chunks.push(chunk);
    buffered += chunk.length;
    for (;;) {
      if (buffered < 8) return;
      if (chunks[0].length < 8) chunks = [Buffer.concat(chunks)];
      const headerLength = chunks[0].readUInt32BE(0);
      const total = 8 + headerLength + chunks[0].readUInt32BE(4);
      // Join only once the whole frame is here: a big body costs one copy.
      if (buffered < total) return;
      const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      const header = JSON.parse(data.toString('utf8', 8, 8 + headerLength));
      const body = data.subarray(8 + headerLength, total);
      chunks = total < data.length ? [data.subarray(total)] : [];
      buffered -= total;
      queue = queue.then(() => {
        if (header.gate > swapsSeen) passGate(header.gate);
        return handle(header, body);
      });
    }
  });
  channel.on('end', () => process.exit(0));
  channel.on('error', () => process.exit(0));
}

/**
 * A per-call cap on captured output: take(chunk) returns the part that still
 * fits and counts the rest as dropped (reported as a truncation marker).
 */
export function outputBudget(limit) {
  return {
    bytes: 0,
    dropped: 0,
    take(chunk) {
      const kept = chunk.subarray(0, Math.max(limit - this.bytes, 0));
      this.bytes += kept.length;
      this.dropped += chunk.length - kept.length;
      return kept;
    },
  };
}

/** Reports a function that cannot load, then exits. */
export function failInit(error) {
  send({ k: 'init_error', message: error?.message ?? String(error), stack: error?.stack });
  channel.end(() => process.exit(1));
}
