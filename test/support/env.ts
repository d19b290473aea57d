// Shared test environment: built images are cached in one directory for all
// test files; each test file gets its own state dir (and so its own cgroup
// parent), so files running in parallel never see each other's sandboxes.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ImageStore, type Image } from '../../src/images/index.js';
import { PROJECT_ROOT, SandboxHost, type BootRequest, type ExitInfo, type Sandbox } from '../../src/sandbox/index.js';

export const TEST_IMAGE_DIR = process.env.FNBOX_TEST_IMAGE_DIR ?? join(PROJECT_ROOT, '.fnbox', 'test-images');

export function imageStore(): ImageStore {
  return new ImageStore({ dir: TEST_IMAGE_DIR, definitionsDir: join(PROJECT_ROOT, 'images'), projectRoot: PROJECT_ROOT });
}

export function image(name: string): Image {
  return imageStore().getSync(name);
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join('/tmp', `fnbox-test-${prefix}-`));
}

export async function openTestHost(prefix: string): Promise<{ host: SandboxHost; stateDir: string; cleanup: () => Promise<void> }> {
  const stateDir = tempDir(prefix);
  const host = await SandboxHost.open({ stateDir });
  return {
    host,
    stateDir,
    cleanup: async () => {
      await host.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  output: string;
  exit: ExitInfo;
  sandbox: Sandbox;
}

/** Boots a sandbox, collects its stdout+stderr until it exits, destroys it. */
export async function run(host: SandboxHost, request: Omit<BootRequest, 'captureLogs'>, keep = false): Promise<RunResult> {
  const sandbox = await host.boot({ ...request, captureLogs: true });
  const chunks: Buffer[] = [];
  const logClosed = new Promise<void>((resolve) => {
    sandbox.log!.on('data', (chunk: Buffer) => chunks.push(chunk));
    sandbox.log!.on('close', () => resolve());
    sandbox.log!.resume();
  });
  const exit = await sandbox.exited;
  await Promise.race([logClosed, new Promise((resolve) => setTimeout(resolve, 1000))]);
  if (!keep) await sandbox.destroy();
  return { output: Buffer.concat(chunks).toString('utf8'), exit, sandbox };
}

/** Runs a shell script in the shell image. */
export function sh(host: SandboxHost, script: string, request: Partial<BootRequest> = {}): Promise<RunResult> {
  return run(host, { layers: [image('shell').rootfs], argv: ['/bin/sh', '-c', script], ...request });
}
