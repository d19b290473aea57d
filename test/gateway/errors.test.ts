// Every error type of DESIGN.md §4 with its status, and bad input that
// changes nothing: the previous version keeps serving, no partial files.
import { readdirSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { deployEntries, deployFiles, errorOf, invoke, NODE_ECHO, put, startTestGateway, type TestGateway } from '../support/gateway.js';

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway('errors', { maxPayloadMb: '1', queueWaitMs: '300' });
  await deployFiles(gateway, 'echo', NODE_ECHO);
  await deployFiles(gateway, 'faulty', {
    'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index.handler', timeoutMs: 1500, memoryMb: 96 }),
    'index.mjs': `export const handler = async (event) => {
      if (event === 'throw') throw new RangeError('thrown by the function');
      if (event === 'exit') process.exit(7);
      if (event === 'oom') { const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1)); }
      if (event === 'loop') for (;;) {}
      return 'fine';
    };`,
  });
});
afterAll(() => gateway.stop());

function functionFiles(name: string): string[] {
  return readdirSync(join(gateway.stateDir, 'functions', name), { recursive: true }) as string[];
}

describe('typed errors', () => {
  it('FunctionNotFound 404', async () => {
    expect(await errorOf(await invoke(gateway, 'missing'))).toMatchObject({ status: 404, type: 'FunctionNotFound' });
    expect(await errorOf(await fetch(`${gateway.url}/functions/missing`))).toMatchObject({ status: 404, type: 'FunctionNotFound' });
  });

  it('Unhandled 502 carries the message and stack', async () => {
    const error = await errorOf(await invoke(gateway, 'faulty', 'throw'));
    expect(error).toMatchObject({ status: 502, type: 'Unhandled', message: 'thrown by the function', body: { name: 'RangeError', invocationId: expect.any(String) } });
    expect(String(error.body.stack)).toContain('index.mjs');
  });

  it('Crashed 502 carries the exit code', async () => {
    expect(await errorOf(await invoke(gateway, 'faulty', 'exit'))).toMatchObject({ status: 502, type: 'Crashed', body: { exitCode: 7 } });
  });

  it('OutOfMemory 502, from the cgroup counter', async () => {
    expect(await errorOf(await invoke(gateway, 'faulty', 'oom'))).toMatchObject({ status: 502, type: 'OutOfMemory', body: { memoryMb: 96 } });
  });

  it('Timeout 504', async () => {
    expect(await errorOf(await invoke(gateway, 'faulty', 'loop'))).toMatchObject({ status: 504, type: 'Timeout' });
    // and the function still answers afterwards, from a fresh sandbox
    expect(await (await invoke(gateway, 'faulty', 'ok')).json()).toBe('fine');
  });

  it('PayloadTooLarge 413 before the function sees it', async () => {
    expect(await errorOf(await invoke(gateway, 'echo', Buffer.alloc(1024 * 1024 + 1)))).toMatchObject({ status: 413, type: 'PayloadTooLarge' });
  });

  it('Throttled 429 with Retry-After when the queue is full', async () => {
    await deployFiles(gateway, 'narrow', { ...NODE_ECHO, 'fnbox.json': JSON.stringify({ runtime: 'node', maxConcurrency: 1, queueMax: 1 }) });
    const calls = Array.from({ length: 6 }, () => fetch(`${gateway.url}/fn/narrow/sleep?ms=300`));
    const responses = await Promise.all(calls);
    const throttled = responses.filter((r) => r.status === 429);
    expect(throttled.length).toBeGreaterThan(0);
    expect(throttled[0]!.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await errorOf(throttled[0]!)).toMatchObject({ type: 'Throttled' });
    expect(responses.filter((r) => r.status === 200).length).toBeGreaterThan(0);
  });

  it('Throttled 429 once a call waited queueWaitMs for a sandbox; its turn goes to the next call', async () => {
    await deployFiles(gateway, 'single', { ...NODE_ECHO, 'fnbox.json': JSON.stringify({ runtime: 'node', maxConcurrency: 1, queueMax: 10 }) });
    const answered: string[] = [];
    const busy = fetch(`${gateway.url}/fn/single/sleep?ms=1500`).then((r) => (answered.push('busy'), r));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const waiting = await fetch(`${gateway.url}/fn/single/sleep?ms=1`).then((r) => (answered.push('waiting'), r));
    expect(await errorOf(waiting)).toMatchObject({ status: 429, type: 'Throttled', message: expect.stringContaining('within 300 ms') });
    expect((await busy).status).toBe(200);
    // The budget ended the wait, not the busy call finishing.
    expect(answered).toEqual(['waiting', 'busy']);
    expect((await fetch(`${gateway.url}/fn/single/sleep?ms=1`)).status).toBe(200);
  });

  it('a caller that hangs up on a call that ends within the grace: the call runs to its end, its sandbox stays warm', async () => {
    await deployFiles(gateway, 'hangup-short', {
      'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', maxConcurrency: 1, minWarm: 1 }),
      'index.mjs': `let calls = 0;
export default { async fetch(request) {
  calls++;
  const ms = Number(new URL(request.url).searchParams.get('ms') ?? 0);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return Response.json({ calls });
} };`,
    });
    const first = (await (await fetch(`${gateway.url}/fn/hangup-short/`)).json()) as { calls: number };
    const abort = new AbortController();
    const call = fetch(`${gateway.url}/fn/hangup-short/?ms=300`, { signal: abort.signal }).catch((error: Error) => error);
    await new Promise((resolve) => setTimeout(resolve, 100));
    abort.abort();
    expect(await call).toBeInstanceOf(Error);
    // The next call waits for the abandoned one to end (one slot) and meets the same process, whose
    // count includes it: nothing was killed (a new sandbox would count from 1).
    const next = (await (await fetch(`${gateway.url}/fn/hangup-short/`)).json()) as { calls: number };
    expect(next).toEqual({ calls: first.calls + 2 });
    // The abandoned call's answer had nobody to go to: it is not held either.
    const { bodies } = (await (await fetch(`${gateway.url}/healthz`)).json()) as { bodies: { usedBytes: number } };
    expect(bodies.usedBytes).toBe(0);
  });

  it('a caller that hangs up on a call that runs past the grace: the call is stopped, its sandbox replaced, the next call served', async () => {
    await deployFiles(gateway, 'hangup', { ...NODE_ECHO, 'fnbox.json': JSON.stringify({ runtime: 'node', maxConcurrency: 1, minWarm: 1 }) });
    const sandboxIds = async (): Promise<string[]> => {
      const { sandboxes } = (await (await fetch(`${gateway.url}/sandboxes`)).json()) as { sandboxes: Array<{ id: string; function: string }> };
      return sandboxes.filter((s) => s.function === 'hangup').map((s) => s.id);
    };
    const [serving] = await sandboxIds();
    expect(serving).toBeDefined();
    const abort = new AbortController();
    const call = fetch(`${gateway.url}/fn/hangup/sleep?ms=5000`, { signal: abort.signal }).catch((error: Error) => error);
    await new Promise((resolve) => setTimeout(resolve, 300));
    abort.abort();
    expect(await call).toBeInstanceOf(Error);
    // Stopped once the 1 s grace is over, its state is not trusted: the sandbox goes, long before the 5 s sleep would end.
    for (let i = 0; i < 60 && (await sandboxIds()).includes(serving!); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await sandboxIds()).not.toContain(serving);
    expect((await fetch(`${gateway.url}/fn/hangup/sleep?ms=1`)).status).toBe(200);
  });

  it('a response header the function broke (a newline in it) is an Unhandled 502, not a gateway crash', async () => {
    await deployFiles(gateway, 'badheader', {
      'fnbox.json': JSON.stringify({ runtime: 'python', handler: 'main.handler' }),
      'main.py': 'def handler(event, context):\n    return {"statusCode": 200, "headers": {"x-split": "a\\r\\nx-injected: 1"}, "body": "hi"}\n',
    });
    const response = await invoke(gateway, 'badheader', '');
    expect(response.headers.get('x-injected')).toBeNull();
    expect(await errorOf(response)).toMatchObject({ status: 502, type: 'Unhandled', message: expect.stringContaining('x-split'), body: { name: 'InvalidResponseHeader' } });
    expect((await invoke(gateway, 'echo', 'still')).status).toBe(200);
  });

  it('NotFound for an unknown route, as JSON', async () => {
    expect(await errorOf(await fetch(`${gateway.url}/nope`))).toMatchObject({ status: 404, type: 'NotFound' });
  });
});

describe('bad deploys change nothing', () => {
  it('InvalidFunction 400 names the field and range; the previous version keeps serving', async () => {
    const response = await deployFiles(gateway, 'echo', { ...NODE_ECHO, 'fnbox.json': '{"runtime":"node","memoryMb":99999}' });
    expect(await errorOf(response)).toMatchObject({ status: 400, type: 'InvalidFunction', message: expect.stringContaining('memoryMb must be between 16 and 8192') });
    expect((await invoke(gateway, 'echo', 'still')).status).toBe(200);
    expect(functionFiles('echo').some((f) => f.includes('.staging'))).toBe(false);
  });

  it.each([
    ['a ".." path', [{ name: '../evil', content: 'x' }]],
    ['an absolute path', [{ name: '/etc/evil', content: 'x' }]],
    ['an escaping symlink', [{ name: 'fnbox.json', content: '{"runtime":"node"}' }, { name: 'l', type: 'symlink', linkname: '../../..' }]],
    ['a device node', [{ name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 }]],
    ['a setuid binary', [{ name: 'su', content: 'x', mode: 0o4755 }]],
  ] as const)('refuses a tarball with %s and keeps the previous version', async (_what, entries) => {
    const before = functionFiles('echo');
    expect(await errorOf(await deployEntries(gateway, 'echo', entries as never, 'runtime=node'))).toMatchObject({ status: 400, type: 'InvalidFunction' });
    expect(functionFiles('echo')).toEqual(before);
    expect((await invoke(gateway, 'echo', 'still')).status).toBe(200);
  });

  it('InitError 400 at deploy for a module that cannot load; nothing is stored', async () => {
    const response = await deployFiles(gateway, 'broken', { 'fnbox.json': '{"runtime":"node"}', 'index.mjs': 'import "./nowhere.mjs";\nexport default { fetch() {} };' });
    expect(await errorOf(response)).toMatchObject({ status: 400, type: 'InitError', message: expect.stringContaining('nowhere.mjs') });
    expect(await errorOf(await invoke(gateway, 'broken'))).toMatchObject({ status: 404 });
    expect(readdirSync(join(gateway.stateDir, 'functions'))).not.toContain('broken');
  });

  it('garbage bytes are refused as InvalidFunction, an empty body too', async () => {
    expect(await errorOf(await put(gateway, 'junk', Buffer.from('\x00\x01garbage'.repeat(100))))).toMatchObject({ status: 400, type: 'InvalidFunction' });
    expect(await errorOf(await put(gateway, 'junk', Buffer.alloc(0)))).toMatchObject({ status: 400, type: 'InvalidFunction' });
    expect(await errorOf(await put(gateway, 'Bad%20Name!', Buffer.from('x')))).toMatchObject({ status: 400, type: 'InvalidFunction', message: expect.stringContaining('function name') });
  });
});

describe('auth', () => {
  it('Unauthorized 401 without the right token; the invoke token cannot deploy', async () => {
    const secured = await startTestGateway('auth', { adminToken: 'admin-token-0123456789', invokeToken: 'invoke-token-0123456789' });
    try {
      expect(await errorOf(await fetch(`${secured.url}/functions`))).toMatchObject({ status: 401, type: 'Unauthorized' });
      const admin = { authorization: 'Bearer admin-token-0123456789' };
      expect((await deployFiles(secured, 'echo', NODE_ECHO, '', { token: 'invoke-token-0123456789' })).status).toBe(401);
      expect((await deployFiles(secured, 'echo', NODE_ECHO, '', { token: 'admin-token-0123456789' })).status).toBe(201);
      expect((await fetch(`${secured.url}/functions`, { headers: admin })).status).toBe(200);
      expect((await invoke(secured, 'echo', '', { headers: { authorization: 'Bearer wrong-token-0000000000' } })).status).toBe(401);
      const ok = await invoke(secured, 'echo', '', { headers: { authorization: 'Bearer invoke-token-0123456789' } });
      expect(ok.status).toBe(200);
      // The caller's token never reaches the function.
      expect(await ok.json()).toMatchObject({ auth: null });
      expect((await fetch(`${secured.url}/healthz`)).status).toBe(200);
    } finally {
      await secured.stop();
    }
  });
});

function connect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.on('error', reject);
  });
}

/** The first bytes the server answers on `socket`, or null when it closes without a word. */
function answer(socket: Socket, request: string): Promise<string | null> {
  return new Promise((resolve) => {
    socket.once('data', (chunk: Buffer) => resolve(chunk.toString()));
    socket.once('close', () => resolve(null));
    socket.on('error', () => {});
    socket.write(request);
  });
}

describe('payloads held in memory at once', () => {
  async function bufferedBytes(gw: TestGateway): Promise<number> {
    const { bodies } = (await (await fetch(`${gw.url}/healthz`)).json()) as { bodies: { usedBytes: number } };
    return bodies.usedBytes;
  }

  /** The gateway lets go of a response once the client has it: a moment after the client's read. */
  async function releasedAll(gw: TestGateway): Promise<void> {
    for (let i = 0; i < 100 && (await bufferedBytes(gw)) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await bufferedBytes(gw)).toBe(0);
  }

  /** A call that is taken (200), read to its end, after which the gateway holds nothing. */
  async function answeredAndReleased(gw: TestGateway, path: string, body: Buffer): Promise<void> {
    const response = await fetch(`${gw.url}${path}`, { method: 'POST', body });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    await releasedAll(gw);
  }

  it('past --max-buffered-mb a call is Throttled before its body is read; what a call held is given back', async () => {
    const held = await startTestGateway('buffered', { maxPayloadMb: '6', maxBufferedMb: '8' });
    try {
      await deployFiles(held, 'echo', NODE_ECHO);
      const big = Buffer.alloc(5 * 1024 * 1024, 97);
      const slow = fetch(`${held.url}/fn/echo/sleep?ms=1500`, { method: 'POST', body: big });
      for (let i = 0; i < 100 && (await bufferedBytes(held)) === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await bufferedBytes(held)).toBe(big.length);
      // 5 MiB more would pass 8 MiB.
      const refused = await fetch(`${held.url}/fn/echo/`, { method: 'POST', body: big });
      expect(refused.headers.get('retry-after')).toBe('1');
      const error = await errorOf(refused);
      expect(error).toMatchObject({ status: 429, type: 'Throttled', body: { limitBytes: 8 * 1024 * 1024 } });
      expect(error.message).toMatch(/holds 5\.0 MiB of payloads and responses, .* its limit of 8 MiB \(--max-buffered-mb\)/);
      const metrics = await (await fetch(`${held.url}/metrics`)).text();
      expect(metrics).toMatch(/fnbox_throttled_total\{function="echo",reason="buffered_bodies"\} 1/);
      expect(metrics).toMatch(new RegExp(`fnbox_buffered_bytes\\{kind="used"\\} ${big.length}\\b`));
      expect(metrics).toMatch(new RegExp(`fnbox_buffered_bytes\\{kind="limit"\\} ${8 * 1024 * 1024}\\b`));
      // A small payload fits beside it.
      expect((await fetch(`${held.url}/fn/echo/`, { method: 'POST', body: 'small' })).status).toBe(200);
      // A streamed body (no Content-Length) counts at the payload limit until it is read: 5 + 6 > 8.
      const streamed = await fetch(`${held.url}/fn/echo/`, {
        method: 'POST',
        body: new ReadableStream({ start(controller) { controller.enqueue(new TextEncoder().encode('streamed')); controller.close(); } }),
        duplex: 'half',
      } as RequestInit);
      expect(streamed.status).toBe(429);
      // The echo's answer (the payload again) is held until the client has it.
      const answered = await slow;
      expect(answered.status).toBe(200);
      expect(await bufferedBytes(held)).toBeGreaterThan(big.length);
      await answered.arrayBuffer();
      await releasedAll(held);
      // Given back: the same payload is taken now.
      await answeredAndReleased(held, '/fn/echo/', big);
    } finally {
      await held.stop();
    }
  });

  it('a response its client does not read counts until the client is gone; calls past the budget are Throttled meanwhile', async () => {
    const held = await startTestGateway('buffered-responses', { maxPayloadMb: '64', maxBufferedMb: '64' });
    const reader = await connect(held.port);
    try {
      await deployFiles(held, 'big', {
        'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', memoryMb: 512 }),
        'index.mjs': 'export default { async fetch() { return new Response(new Uint8Array(40 * 1024 * 1024)); } };',
      });
      // Asks, then reads nothing: the kernel's socket buffers take a few MiB, the gateway keeps the rest.
      reader.pause();
      reader.write('POST /fn/big/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
      for (let i = 0; i < 200 && (await bufferedBytes(held)) < 40 * 1024 * 1024; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await bufferedBytes(held)).toBe(40 * 1024 * 1024);
      const payload = Buffer.alloc(30 * 1024 * 1024);
      expect(await errorOf(await fetch(`${held.url}/fn/big/`, { method: 'POST', body: payload }))).toMatchObject({ status: 429, type: 'Throttled' });
      reader.destroy();
      await releasedAll(held);
      await answeredAndReleased(held, '/fn/big/', payload);
    } finally {
      reader.destroy();
      await held.stop();
    }
  });

  it('a call that would be refused is answered before its payload is read', async () => {
    const headersOnly = (path: string): string => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n`;
    // No such function: 404 at once, though the megabyte announced never comes.
    const first = await connect(gateway.port);
    expect(await answer(first, headersOnly('/invoke/no-such-function'))).toMatch(/^HTTP\/1\.1 404/);
    first.destroy();
    // A full queue: 429 at once too.
    await deployFiles(gateway, 'one-at-a-time', { ...NODE_ECHO, 'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', maxConcurrency: 1, queueMax: 0 }) });
    const running = fetch(`${gateway.url}/fn/one-at-a-time/sleep?ms=1000`, { method: 'POST' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await connect(gateway.port);
    expect(await answer(second, headersOnly('/fn/one-at-a-time/'))).toMatch(/^HTTP\/1\.1 429/);
    second.destroy();
    expect((await running).status).toBe(200);
    // Counted like any refused call.
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/fnbox_invocations_total\{function="one-at-a-time",outcome="Throttled"\} [1-9]/);
    expect(metrics).toMatch(/fnbox_throttled_total\{function="one-at-a-time",reason="queue_full"\} [1-9]/);
  });

  it('a budget smaller than one payload is refused at start', () => {
    expect(() => parseConfig({ maxPayloadMb: '6', maxBufferedMb: '4' }, {})).toThrow(/maxBufferedMb \(4\) must be at least maxPayloadMb \(6\)/);
  });
});

describe('connections', () => {
  it('past --max-connections a new connection is closed as it arrives; the open ones, and later ones, are served', async () => {
    const few = await startTestGateway('connections', { maxConnections: '2' });
    const held: Socket[] = [];
    try {
      held.push(await connect(few.port), await connect(few.port));
      const third = await connect(few.port);
      expect(await answer(third, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).toBeNull();
      expect(await answer(held[0]!, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
      // That one closed: there is room again.
      for (let i = 0; i < 50 && !held[0]!.destroyed; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await answer(await connect(few.port), 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
    } finally {
      for (const socket of held) socket.destroy();
      await few.stop();
    }
  });
});
