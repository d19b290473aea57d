import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameTooLargeError, MAX_HEADER_BYTES, parseRuntimeHeader, ProtocolError } from './protocol.js';

function rawFrame(headerJson: string, body = Buffer.alloc(0)): Buffer {
  const header = Buffer.from(headerJson);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(header.length, 0);
  prefix.writeUInt32BE(body.length, 4);
  return Buffer.concat([prefix, header, body]);
}

describe('FrameDecoder', () => {
  it('reassembles frames split anywhere, and several in one chunk', () => {
    const body = Buffer.from([0, 1, 2, 255, 254]);
    const bytes = Buffer.concat([...encodeFrame({ k: 'log', id: 'a', stream: 'stdout' }, body), ...encodeFrame({ k: 'ready', runtime: 'node', version: 'v20' })]);
    for (let cut = 1; cut < bytes.length; cut++) {
      const decoder = new FrameDecoder(1024);
      const frames = [...decoder.push(bytes.subarray(0, cut)), ...decoder.push(bytes.subarray(cut))];
      expect(frames.map((frame) => frame.header)).toEqual([{ k: 'log', id: 'a', stream: 'stdout' }, { k: 'ready', runtime: 'node', version: 'v20' }]);
      expect(frames[0]!.body).toEqual(body);
      expect(frames[1]!.body.length).toBe(0);
    }
  });

  it('refuses a body over its limit and a header over MAX_HEADER_BYTES from the prefix alone', () => {
    const tooBig = Buffer.alloc(8);
    tooBig.writeUInt32BE(2, 0);
    tooBig.writeUInt32BE(1025, 4);
    expect(() => new FrameDecoder(1024).push(tooBig)).toThrow(FrameTooLargeError);
    const hugeHeader = Buffer.alloc(8);
    hugeHeader.writeUInt32BE(MAX_HEADER_BYTES + 1, 0);
    expect(() => new FrameDecoder(1024).push(hugeHeader)).toThrow(expect.objectContaining({ part: 'header' }));
  });

  it('a header that is not JSON is a ProtocolError', () => {
    expect(() => new FrameDecoder(1024).push(rawFrame('{nope'))).toThrow(ProtocolError);
  });
});

describe('parseRuntimeHeader: whatever the sandbox sends is checked', () => {
  const valid = [
    { k: 'ready', runtime: 'node', version: 'v20.0.0' },
    { k: 'ready', runtime: 'node', version: 'v20.0.0', spare: true },
    { k: 'init_error', message: 'boom' },
    { k: 'init_error', message: 'boom', stack: 'at x' },
    { k: 'log', id: 'c1', stream: 'stderr' },
    { k: 'log', id: 'c1', stream: 'stdout', truncated: 10 },
    { k: 'result', id: 'c1', status: 200, headers: [] },
    { k: 'result', id: 'c1', status: 42, headers: [['content-type', 'text/plain'], ['set-cookie', 'a=1']] },
    { k: 'error', id: 'c1', type: 'Unhandled', message: 'x' },
    { k: 'error', id: 'c1', type: 'Unhandled', message: 'x', name: 'TypeError', stack: 'at y' },
  ];
  it.each(valid)('accepts %j', (header) => {
    expect(parseRuntimeHeader(header)).toBe(header);
  });

  const invalid: Array<[unknown, RegExp]> = [
    [null, /must be a JSON object/],
    ['hello', /must be a JSON object/],
    [[1, 2], /must be a JSON object/],
    [{}, /unknown frame kind undefined/],
    [{ k: 'invoke' }, /unknown frame kind "invoke"/],
    [{ k: 'toString' }, /unknown frame kind "toString"/],
    [{ k: 'ready', runtime: 1, version: 'v' }, /kind "ready" needs runtime and version/],
    [{ k: 'log', id: 'c1', stream: 'stdin' }, /kind "log" needs/],
    [{ k: 'log', id: 'c1', stream: 'stdout', truncated: 'abc' }, /kind "log" needs/],
    [{ k: 'log', id: 'c1', stream: 'stdout', truncated: -1 }, /kind "log" needs/],
    [{ k: 'result', id: 'c1', status: 200, headers: 5 }, /kind "result" needs .*headers/],
    [{ k: 'result', id: 'c1', status: 200, headers: [[1, 2]] }, /kind "result" needs/],
    [{ k: 'result', id: 'c1', status: 200, headers: [['a']] }, /kind "result" needs/],
    [{ k: 'result', id: 'c1', status: '200', headers: [] }, /kind "result" needs/],
    [{ k: 'result', id: 'c1', status: Infinity, headers: [] }, /kind "result" needs/],
    [{ k: 'result', status: 200, headers: [] }, /kind "result" needs id/],
    [{ k: 'error', id: 'c1', type: 'Unhandled', message: { nested: true } }, /kind "error" needs/],
    [{ k: 'error', id: 'c1', type: 'Crashed', message: 'x' }, /kind "error" needs/],
  ];
  it.each(invalid)('refuses %j', (header, message) => {
    expect(() => parseRuntimeHeader(header)).toThrow(ProtocolError);
    expect(() => parseRuntimeHeader(header)).toThrow(message);
  });
});
