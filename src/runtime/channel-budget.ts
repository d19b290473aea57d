// How much a sandbox may send on its channel between the starts of two
// calls. The function shares its process with the runtime and can write
// frames itself; each one costs the gateway's single event loop a parse, so
// a flood of well-formed frames would stall every other tenant. An honest
// runtime stays far below this budget: it caps a call's logs at maxLogBytes
// and sends no empty log frame, so a call is at most one frame per log byte,
// a marker, and its result.
import { MAX_HEADER_BYTES, ProtocolError } from './protocol.js';

export interface ChannelLimits {
  maxResponseBytes: number;
  maxLogBytes: number;
}

/** Room per frame for its prefix and header (a log frame's header is ~80 bytes). */
const FRAME_ALLOWANCE_BYTES = 256;
/** Frames besides the log frames: ready, the result, the truncation marker, an exec's stderr. */
const SPARE_FRAMES = 16;

export class ChannelBudget {
  private frames = 0;
  private bytes = 0;

  constructor(private readonly limits: () => ChannelLimits) {}

  /** A call starts: the window opens afresh. */
  reset(): void {
    this.frames = 0;
    this.bytes = 0;
  }

  /** Charges what arrived; throws a ProtocolError once past the budget. */
  charge(bytes: number, frames: number): void {
    const { maxResponseBytes, maxLogBytes } = this.limits();
    const maxFrames = maxLogBytes + SPARE_FRAMES;
    const maxBytes = maxResponseBytes + maxLogBytes + MAX_HEADER_BYTES + maxFrames * FRAME_ALLOWANCE_BYTES;
    this.bytes += bytes;
    this.frames += frames;
    if (this.frames > maxFrames) throw new ProtocolError(`it sent ${this.frames} frames for one call; its logs (maxLogBytes ${maxLogBytes}) allow at most ${maxFrames}`);
    if (this.bytes > maxBytes) throw new ProtocolError(`it sent ${this.bytes} bytes for one call; its limits allow at most ${maxBytes}`);
  }
}
