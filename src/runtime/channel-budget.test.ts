import { describe, expect, it } from 'vitest';
import { ChannelBudget } from './channel-budget.js';
import { MAX_HEADER_BYTES, ProtocolError } from './protocol.js';

const limits = { maxResponseBytes: 1000, maxLogBytes: 100 };

describe('ChannelBudget', () => {
  it('allows one frame per log byte plus 16, and refuses the next', () => {
    const budget = new ChannelBudget(() => limits);
    budget.charge(0, 116);
    expect(() => budget.charge(0, 1)).toThrow(ProtocolError);
    expect(() => budget.charge(0, 0)).toThrow(/it sent 117 frames for one call; its logs \(maxLogBytes 100\) allow at most 116/);
  });

  it('allows the response, the logs, one big header and 256 bytes per frame, and refuses a byte more', () => {
    const budget = new ChannelBudget(() => limits);
    const most = 1000 + 100 + MAX_HEADER_BYTES + 116 * 256;
    budget.charge(most, 0);
    expect(() => budget.charge(1, 0)).toThrow(new RegExp(`it sent ${most + 1} bytes for one call; its limits allow at most ${most}`));
  });

  it('starts afresh with each call, and follows the limits as they change (a spare adopted)', () => {
    let current = limits;
    const budget = new ChannelBudget(() => current);
    budget.charge(0, 116);
    budget.reset();
    budget.charge(0, 116);
    budget.reset();
    current = { maxResponseBytes: 1000, maxLogBytes: 200 };
    budget.charge(0, 216);
    expect(() => budget.charge(0, 1)).toThrow(ProtocolError);
  });
});
