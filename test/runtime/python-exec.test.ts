// The python and exec runtimes, for real.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxHost } from '../../src/sandbox/index.js';
import type { Worker } from '../../src/runtime/worker.js';
import { image, openTestHost, run } from '../support/env.js';
import { json, request, startWorker } from './helpers.js';

let host: SandboxHost;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ host, cleanup } = await openTestHost('py-exec'));
});
afterAll(() => cleanup());

describe('python image', () => {
  it('imports the standard library from its cached bytecode (the image keeps the sources\' mtimes)', async () => {
    const python = image('python');
    const { output, exit } = await run(host, { layers: [python.rootfs], argv: [python.interpreters.python!.executable, '-S', '-B', '-v', '-c', 'import json'] });
    expect(exit.code).toBe(0);
    expect(output).toMatch(/code object from '[^']*json\/__pycache__\/__init__\.cpython-\d+\.pyc'/);
    expect(output).not.toMatch(/bytecode is stale/);
  });
});

describe('python', () => {
  let worker: Worker;
  beforeAll(async () => {
    worker = await startWorker(host, 'python', 'python', 'main.handler');
  });

  it('round-trips JSON, text, binary, multi-MiB and empty bodies', async () => {
    expect(json((await worker.invoke(request('/', '{"a":[1,2]}', [['content-type', 'application/json']]))).body)).toEqual({ echo: { a: [1, 2] } });
    expect(json((await worker.invoke(request('/', 'hello text'))).body)).toEqual({ echo: 'hello text' });
    const binary = randomBytes(3 * 1024 * 1024);
    binary[0] = 0xff; // never valid UTF-8: stays bytes
    const echoed = await worker.invoke(request('/', binary));
    expect(Buffer.compare(echoed.body, binary)).toBe(0);
    expect(echoed.headers).toContainEqual(['content-type', 'application/octet-stream']);
    expect(json((await worker.invoke(request('/', ''))).body)).toEqual({ echo: null });
  });

  it('maps {statusCode, headers, body}, passes context, keeps globals, captures print()', async () => {
    const proxy = await worker.invoke(request('/', '{"action":"proxy"}'));
    expect(proxy.status).toBe(201);
    expect(proxy.headers).toContainEqual(['x-py', '1']);
    expect(proxy.body.toString()).toBe('created');
    const decoded = await worker.invoke(request('/', '{"action":"base64"}'));
    expect([...decoded.body]).toEqual([0, 1, 255]);
    expect(json((await worker.invoke(request('/', '{"action":"context"}'))).body)).toMatchObject({ remaining: true });
    const first = json((await worker.invoke(request('/', '{"action":"calls"}'))).body) as { calls: number };
    const second = json((await worker.invoke(request('/', '{"action":"calls"}'))).body) as { calls: number };
    expect(second.calls).toBe(first.calls + 1);
    expect((await worker.invoke(request('/', '{"action":"log"}'))).logs).toBe('hello from python\n');
    // 200,000 writes (print writes the line, then its end), half of them empty: within what a call may send.
    const chatty = await worker.invoke(request('/', '{"action":"log-lines"}'));
    expect(chatty.logs).toMatch(/^\n{65536}\n\[fnbox: log truncated, 34464 bytes dropped\]\n$/);
  });

  it('gives each call a fresh filesystem, also back to back (the next call waits at its gate for the reset)', async () => {
    const seen: unknown[] = [];
    for (let i = 0; i < 100; i++) seen.push(json((await worker.invoke(request('/', '{"action":"write"}'))).body));
    expect(seen.filter((body) => JSON.stringify(body) !== '{"existed":false}')).toEqual([]);
  });

  it('an exception is Unhandled with the traceback; os._exit(3) is Crashed', async () => {
    const error = await worker.invoke(request('/', '{"action":"throw"}')).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'Unhandled', message: 'python boom', details: { name: 'ValueError' } });
    expect((error as { details: { stack: string } }).details.stack).toContain('main.py');
    const crasher = await startWorker(host, 'python', 'python', 'main.handler');
    await expect(crasher.invoke(request('/', '{"action":"exit"}'))).rejects.toMatchObject({ code: 'Crashed', details: { exitCode: 3 } });
  });

  it('runs async handlers', async () => {
    const asyncWorker = await startWorker(host, 'python', 'python', 'main.async_handler');
    try {
      expect(json((await asyncWorker.invoke(request('/', '7'))).body)).toEqual({ async: true, echo: 7 });
    } finally {
      await asyncWorker.destroy();
    }
  });

  it('a module that fails to import is InitError', async () => {
    await expect(startWorker(host, 'python-bad', 'python', 'main.handler')).rejects.toMatchObject({
      code: 'InitError',
      message: expect.stringContaining("No module named 'module_that_does_not_exist'"),
    });
  });
});

describe('exec', () => {
  let worker: Worker;
  beforeAll(async () => {
    worker = await startWorker(host, 'exec', 'exec', 'run.sh', { env: { GREETING: 'hi' } });
  });

  it('pipes the payload through the executable: text, binary, multi-MiB, empty', async () => {
    const text = await worker.invoke(request('/', 'hello exec'));
    expect(text.body.toString()).toBe('hello exec');
    expect(text.headers).toContainEqual(['content-type', 'text/plain; charset=utf-8']);
    expect(text.logs).toBe('log line\n');
    const binary = randomBytes(2 * 1024 * 1024);
    binary[0] = 0xff;
    const echoed = await worker.invoke(request('/', binary));
    expect(Buffer.compare(echoed.body, binary)).toBe(0);
    expect(echoed.headers).toContainEqual(['content-type', 'application/octet-stream']);
    expect((await worker.invoke(request('/', ''))).body.length).toBe(0);
  });

  it('gives the executable the request as CGI-like variables and the function env', async () => {
    const result = await worker.invoke(request('/some/path?env', '', [], 'GET'));
    expect(result.body.toString()).toMatch(/^method=GET path=\/some\/path id=[0-9a-f-]{36} greeting=hi\n$/);
  });

  it('a non-zero exit status is an error carrying the stderr tail', async () => {
    await expect(worker.invoke(request('/?fail', ''))).rejects.toMatchObject({
      code: 'Unhandled',
      message: expect.stringContaining('exited with code 3: something went wrong'),
    });
    expect(worker.state).not.toBe('dead');
  });

  it('caps the executable\'s stderr with a visible truncation marker', async () => {
    const result = await worker.invoke(request('/?log-flood', ''));
    expect(result.logs.length).toBeLessThan(70 * 1024);
    expect(result.logs).toMatch(/^a line of log/);
    expect(result.logs).toMatch(/\[fnbox: log truncated, \d+ bytes dropped\]/);
  });

  it('a missing executable is InitError', async () => {
    await expect(startWorker(host, 'exec', 'exec', 'nope.sh')).rejects.toMatchObject({ code: 'InitError', message: expect.stringContaining('nope.sh not found') });
  });
});
