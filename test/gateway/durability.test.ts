// What survives: a restart keeps every function; a gateway SIGKILLed in the
// middle of an upload leaves the previous version serving and no debris.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/sandbox/index.js';
import { TEST_IMAGE_DIR, tempDir } from '../support/env.js';
import { deployFiles, invoke, NODE_ECHO, startTestGateway } from '../support/gateway.js';
import { filesTar } from '../support/tarball.js';

async function startChildGateway(stateDir: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js'), 'serve', '--port', String(port), '--state-dir', stateDir, '--images-dir', TEST_IMAGE_DIR, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return child;
    } catch {
      // not yet
    }
    await sleep(50);
  }
  throw new Error('the child gateway did not start');
}

describe('durability', () => {
  it('a restart keeps every function, version and configuration', async () => {
    const first = await startTestGateway('restart');
    const stateDir = first.stateDir;
    await deployFiles(first, 'echo', NODE_ECHO, 'env.VERSION=kept');
    await first.close();
    const second = await startTestGateway('restart', {}, stateDir);
    try {
      expect(await (await invoke(second, 'echo')).json()).toMatchObject({ version: 'kept' });
    } finally {
      await second.stop();
    }
  });

  it('a SIGKILL in the middle of an upload leaves the previous version serving and no partial files', async () => {
    const stateDir = tempDir('sigkill-upload');
    const port = 20000 + (process.pid % 10000);
    let child = await startChildGateway(stateDir, port);
    try {
      const base = `http://127.0.0.1:${port}`;
      expect((await deployFiles({ url: base } as never, 'echo', NODE_ECHO, 'env.VERSION=old')).status).toBe(201);
      // Half an upload, then the gateway dies.
      const tarball = await filesTar({ ...NODE_ECHO, 'big.bin': 'x'.repeat(4 * 1024 * 1024) });
      const { request } = await import('node:http');
      const upload = request(`${base}/functions/echo?env.VERSION=new`, { method: 'PUT', headers: { 'content-length': String(tarball.length) } });
      upload.on('error', () => {});
      upload.write(tarball.subarray(0, tarball.length / 2));
      await sleep(300);
      expect(readdirSync(join(stateDir, 'functions', 'echo')).some((f) => f.startsWith('.staging-'))).toBe(true);
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      upload.destroy();

      child = await startChildGateway(stateDir, port);
      expect(readdirSync(join(stateDir, 'functions', 'echo')).filter((f) => f.startsWith('.'))).toEqual([]);
      expect(await (await invoke({ url: base } as never, 'echo')).json()).toMatchObject({ version: 'old' });
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
