// The CLI against a real gateway: deploy a directory, invoke, list, inspect, remove.
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { tempDir } from '../support/env.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const run = promisify(execFile);
const CLI = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js');
let gateway: TestGateway;
let work: string;

async function fnbox(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, ...args], { env: { ...process.env, FNBOX_URL: gateway.url } });
}

beforeAll(async () => {
  gateway = await startTestGateway('cli');
  work = tempDir('cli-work');
  mkdirSync(join(work, 'greeter'));
  writeFileSync(join(work, 'greeter', 'index.mjs'), 'export const handler = async (event) => { console.log("greeting", event.name); return { hello: event.name }; };');
  writeFileSync(join(work, 'greeter', 'fnbox.json'), '{"runtime":"node","handler":"index.handler"}');
});
afterAll(async () => {
  await gateway.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('fnbox CLI', () => {
  it('deploys a directory, invokes it with logs, lists, shows sandboxes and removes it', async () => {
    const deployed = JSON.parse((await fnbox('deploy', join(work, 'greeter'), '--memory-mb', '96')).stdout) as { name: string; created: boolean; config: { memoryMb: number } };
    expect(deployed).toMatchObject({ name: 'greeter', created: true, config: { memoryMb: 96 } });
    const invoked = await fnbox('invoke', 'greeter', '--data', '{"name":"cli"}', '--logs');
    expect(JSON.parse(invoked.stdout)).toEqual({ hello: 'cli' });
    expect(invoked.stderr).toContain('greeting cli');
    expect(invoked.stderr).toMatch(/\[200 [0-9a-f-]{36} duration-ms=/);
    expect((JSON.parse((await fnbox('ls')).stdout) as { functions: Array<{ name: string }> }).functions.map((f) => f.name)).toEqual(['greeter']);
    expect((JSON.parse((await fnbox('ps')).stdout) as { sandboxes: Array<{ function: string }> }).sandboxes.some((s) => s.function === 'greeter')).toBe(true);
    expect((JSON.parse((await fnbox('logs', 'greeter')).stdout) as { calls: Array<{ logs: string }> }).calls.at(-1)?.logs).toBe('greeting cli\n');
    expect(JSON.parse((await fnbox('rm', 'greeter')).stdout)).toEqual({ deleted: 'greeter' });
    await expect(fnbox('invoke', 'greeter')).rejects.toMatchObject({ code: 1 });
  });
});
