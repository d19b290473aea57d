// wrangler-free-readme.md stays true: its shell blocks, run in order with
// curl and tar against a real gateway, all succeed and say what the guide says.
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { tempDir } from '../support/env.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const run = promisify(execFile);
let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway('curl-guide');
});
afterAll(() => gateway.stop());

export function shellBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
}

describe('wrangler-free-readme.md', () => {
  it('every command runs, in order, with nothing but curl and tar', async () => {
    const blocks = shellBlocks(readFileSync(join(PROJECT_ROOT, 'wrangler-free-readme.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    const cwd = tempDir('curl-guide-work');
    try {
      const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', blocks.join('\n')], { cwd, env: { ...process.env, FNBOX: gateway.url }, maxBuffer: 16 * 1024 * 1024 });
      expect(stdout).toContain('"status":"ok"');
      expect(stdout).toContain('"created":true');
      expect(stdout).toContain('{"greeting":"hello","path":"/invoke/hello","body":"some payload"}');
      expect(stdout).toMatch(/x-fnbox-invocation-id: [0-9a-f-]{36}/i);
      expect(stdout).toMatch(/x-fnbox-memory-peak-bytes: \d+/i);
      expect(stdout).toContain('{"greeting":"hello","path":"/items/42","body":"updated"}');
      expect(stdout).toContain('{"greeting":"bonjour","path":"/invoke/hello","body":""}');
      expect(stdout).toContain('{"sum": 6}');
      expect(stdout).toContain('QUIET PLEASE');
      expect(stdout).toMatch(/fnbox_invocations_total\{function="hello",outcome="ok"\} \d+/);
      expect(stdout).toContain('"type":"FunctionNotFound"');
      expect(gateway.deps.store.list()).toEqual([]);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
