// Hostile uploads and hostile HTTP: every trick is refused with a typed
// error, nothing is written, and the gateway keeps serving.
import { readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFiles, errorOf, put, startTestGateway, type TestGateway } from '../support/gateway.js';
import { makeTar, type TarEntry } from '../support/tarball.js';
import { hostView, setUpWitness, underAttack, witnessLatency } from './helpers.js';

let gateway: TestGateway;
let idle: number;
beforeAll(async () => {
  gateway = await startTestGateway('adversarial-uploads', { bodyIdleMs: '1000', maxUploadMb: '16' });
  idle = await setUpWitness(gateway);
});
afterAll(() => gateway.stop());

const manifest: TarEntry = { name: 'fnbox.json', content: '{"runtime":"node"}' };
const code: TarEntry = { name: 'index.mjs', content: 'export default { fetch: () => new Response("x") };' };

function stateFiles(): string[] {
  return (readdirSync(join(gateway.stateDir, 'functions'), { recursive: true }) as string[]).sort();
}

async function refusedUpload(name: string, body: Buffer, type = 'InvalidFunction', status = 400): Promise<string> {
  const files = stateFiles();
  const error = await underAttack(gateway, idle, name, { run: async () => errorOf(await put(gateway, name, body)) });
  expect(error).toMatchObject({ status, type });
  expect(stateFiles()).toEqual(files);
  return error.message;
}

describe('tarballs that try to escape are refused', () => {
  it.each([
    ['a ".." path', [manifest, code, { name: '../../etc/cron.d/evil', content: 'x' }], /goes up/],
    ['an absolute path', [manifest, code, { name: '/etc/evil', content: 'x' }], /absolute path/],
    ['an escaping symlink', [manifest, code, { name: 'escape', type: 'symlink', linkname: '../../../../etc' }], /leaves the function's root/],
    ['a symlink then a write through it', [manifest, code, { name: 'dir', type: 'symlink', linkname: '/tmp' }, { name: 'dir/owned', content: 'x' }], /absolute path|not a directory/],
    ['an escaping hardlink', [manifest, code, { name: 'hard', type: 'link', linkname: '../../../etc/shadow' }], /goes up/],
    ['a hardlink to a host path', [manifest, code, { name: 'hard', type: 'link', linkname: 'etc/shadow' }], /regular file earlier/],
    ['a device node', [manifest, code, { name: 'mem', type: 'character-device', devmajor: 1, devminor: 1 }], /device node/],
    ['a fifo', [manifest, code, { name: 'pipe', type: 'fifo' }], /fifo/],
    ['a setuid binary', [manifest, code, { name: 'su', content: '#!/bin/sh\n', mode: 0o4755 }], /setuid/],
  ] as const)('%s', async (_what, entries, message) => {
    expect(await refusedUpload('attack-tar', await makeTar(entries as never))).toMatch(message);
  });

  it('a gzip bomb', async () => {
    const bomb = await makeTar([manifest, code, { name: 'zeros', content: Buffer.alloc(200 * 1024 * 1024) }], { gzip: true });
    expect(bomb.length).toBeLessThan(1024 * 1024);
    expect(await refusedUpload('attack-bomb', bomb)).toMatch(/compression bomb|unpacks to more than/);
  });

  it('a manifest with out-of-range limits names the field and the range', async () => {
    const tar = await makeTar([{ name: 'fnbox.json', content: '{"runtime":"node","memoryMb":1048576,"pidsMax":1,"timeoutMs":-5}' }, code]);
    const message = await refusedUpload('attack-manifest', tar);
    expect(message).toContain('memoryMb must be between 16 and 8192');
    expect(message).toContain('pidsMax must be between 8 and 4096');
    expect(message).toContain('timeoutMs must be between 10 and 900000');
  });
});

describe('hostile HTTP', () => {
  it('a 1 GiB upload is cut off at the upload limit with PayloadTooLarge', async () => {
    const before = hostView(gateway);
    const outcome = await underAttack(gateway, idle, 'attack-big', { run: () => new Promise<{ status: number; body: string }>((resolve) => {
      const upload = request(`${gateway.url}/functions/attack-big`, { method: 'PUT', headers: { 'content-length': String(1024 ** 3) } }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode!, body }));
      });
      upload.on('error', () => {});
      const chunk = Buffer.alloc(1024 * 1024, 0x41);
      let sent = 0;
      const pump = (): void => {
        while (sent < 1024 && upload.write(chunk)) sent++;
        if (sent < 1024) upload.once('drain', pump);
      };
      pump();
    }) });
    expect(outcome.status).toBe(413);
    expect(JSON.parse(outcome.body).error.type).toBe('PayloadTooLarge');
    expect(hostView(gateway).files).toEqual(before.files);
  });

  it('a slow upload that stops sending is cut off', async () => {
    const result = await new Promise<{ status: number; body: string }>((resolve) => {
      const upload = request(`${gateway.url}/functions/attack-slow`, { method: 'PUT', headers: { 'content-length': '100000' } }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode!, body }));
      });
      upload.on('error', () => resolve({ status: 0, body: 'connection closed' }));
      upload.write(Buffer.alloc(1000, 0x1f));
    });
    expect([408, 0, 400]).toContain(result.status);
    // The connection may close before the half upload is cleaned away: give it a moment.
    for (let i = 0; i < 100 && stateFiles().some((f) => f.includes('attack-slow')); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stateFiles().some((f) => f.includes('attack-slow'))).toBe(false);
  });

  it('garbage bytes on every route get typed errors and the gateway keeps serving', async () => {
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    const routes: Array<[string, string]> = [
      ['PUT', '/functions/garbage'], ['POST', '/invoke/witness-missing'], ['POST', '/functions'], ['GET', '/functions/garbage'],
      ['DELETE', '/functions/garbage'], ['PATCH', '/fn/garbage/x'], ['POST', '/sandboxes'], ['GET', '/metrics'], ['POST', '/healthz'],
    ];
    for (const [method, path] of routes) {
      const response = await fetch(`${gateway.url}${path}`, { method, body: method === 'GET' ? undefined : (garbage as unknown as BodyInit) });
      if (response.status !== 200) {
        const body = (await response.json()) as { error: { type: string } };
        expect(body.error.type, `${method} ${path}`).toMatch(/^[A-Z][A-Za-z]+$/);
        expect(response.status).toBeGreaterThanOrEqual(400);
        expect(response.status).toBeLessThan(500);
      }
    }
    // Raw garbage that is not even HTTP: the connection is answered or closed, nothing else.
    await new Promise<void>((resolve) => {
      const socket = connect(new URL(gateway.url).port as unknown as number, '127.0.0.1', () => socket.end(garbage));
      socket.on('data', () => {});
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
    });
    expect(await witnessLatency(gateway)).toBeLessThanOrEqual(idle * 2 + 1);
  });

  it('oversized headers are refused by the HTTP server (431)', async () => {
    const response = await fetch(`${gateway.url}/invoke/witness`, { method: 'POST', headers: { 'x-big': 'a'.repeat(64 * 1024) }, body: '1' }).catch(() => undefined);
    expect(response === undefined || response.status === 431).toBe(true);
    expect((await deployFiles(gateway, 'after-headers', { 'fnbox.json': '{"runtime":"node"}', 'index.mjs': 'export default { fetch: () => new Response("still here") };' })).status).toBe(201);
  });
});
