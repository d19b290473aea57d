import { describe, expect, it } from 'vitest';
import { manifestFromQuery, parseManifest } from './manifest.js';

describe('manifest', () => {
  it('fills defaults and the runtime\'s default handler', () => {
    expect(parseManifest('{"runtime":"python"}')).toMatchObject({
      runtime: 'python', handler: 'main.handler', memoryMb: 128, cpus: 1, timeoutMs: 30_000, tmpMb: 64, pidsMax: 64,
      env: {}, minWarm: 0, maxConcurrency: 10, queueMax: 100, idleTtlSec: 300,
    });
  });

  it('lets query parameters win over fnbox.json, env merged per name', () => {
    const query = manifestFromQuery({ memoryMb: '256', 'env.B': 'query', handler: 'other.handler' });
    expect(parseManifest('{"runtime":"node","memoryMb":64,"env":{"A":"file","B":"file"}}', query)).toMatchObject({
      runtime: 'node', memoryMb: 256, handler: 'other.handler', env: { A: 'file', B: 'query' },
    });
  });

  it('names the field and the allowed range', () => {
    expect(() => parseManifest('{"runtime":"node","memoryMb":1000000}')).toThrow('memoryMb: memoryMb must be between 16 and 8192');
    expect(() => parseManifest('{"runtime":"cobol"}')).toThrow('runtime: runtime must be one of node, python, exec');
    expect(() => parseManifest('{"runtime":"node","timeoutMs":"soon"}')).toThrow('timeoutMs: timeoutMs must be a number');
    expect(() => parseManifest(undefined)).toThrow(/runtime/);
  });

  it('refuses unknown fields, reserved env names and handlers that leave the function', () => {
    expect(() => parseManifest('{"runtime":"node","memory":5}')).toThrow(/memory/);
    expect(() => manifestFromQuery({ memroyMb: '5' })).toThrow('unknown manifest field "memroyMb"');
    expect(() => parseManifest('{"runtime":"node","env":{"FNBOX_HANDLER":"x"}}')).toThrow(/reserved/);
    expect(() => parseManifest('{"runtime":"exec","handler":"../../bin/sh"}')).toThrow(/inside the function/);
    expect(() => parseManifest('[1,2]')).toThrow(/not a JSON object/);
  });
});
