// Functions that try to exhaust the host: processes, memory, disk, inodes,
// CPU, processes that will not die, responses that never end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFiles, errorOf, invoke, startTestGateway, type TestGateway } from '../support/gateway.js';
import { setUpWitness, underAttack } from './helpers.js';

let gateway: TestGateway;
let idle: number;
beforeAll(async () => {
  gateway = await startTestGateway('adversarial-resources', { maxPayloadMb: '8' });
  idle = await setUpWitness(gateway);
});
afterAll(() => gateway.stop());

const exec = (script: string, manifest: Record<string, unknown> = {}): Record<string, string> => ({
  'fnbox.json': JSON.stringify({ runtime: 'exec', handler: 'run.sh', timeoutMs: 2000, ...manifest }),
  'run.sh': `#!/bin/sh\n${script}\n`,
});

const node = (body: string, manifest: Record<string, unknown> = {}): Record<string, string> => ({
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', timeoutMs: 2000, ...manifest }),
  'index.mjs': `import { spawn } from 'node:child_process';\nimport fs from 'node:fs';\nexport default { async fetch(request) { ${body} } };`,
});

async function attack(name: string, files: Record<string, string>, options: { executable?: boolean; body?: string; path?: string } = {}): Promise<Response> {
  return underAttack(gateway, idle, name, {
    deploy: async () => {
      const deployed = await deployFiles(gateway, name, files, '', { executable: options.executable ? ['run.sh'] : [] });
      expect(deployed.status, await deployed.clone().text()).toBe(201);
    },
    run: () => fetch(`${gateway.url}/fn/${name}${options.path ?? '/'}`, { method: 'POST', body: options.body ?? '' }),
  });
}

describe('resource exhaustion is contained', () => {
  it('a fork bomb stops at pids.max and ends as a Timeout', async () => {
    // The bomb runs beside the script's own process, which forks only once, at
    // the start: a `sleep` forked after the bomb could fail at pids.max, and
    // the script end as an Unhandled exit status instead.
    const response = await attack('attack-forkbomb', exec('bomb() { bomb | bomb & }; bomb & exec sleep 30', { pidsMax: 32 }), { executable: true });
    const error = await errorOf(response);
    expect(error).toMatchObject({ status: 504, type: 'Timeout', body: { pidsMax: 32 } });
    // The kernel refused forks (pids.events `max`), and the error says so.
    expect(error.body.pidsMaxHits).toBeGreaterThan(0);
    expect(error.message).toMatch(/forks were refused at its process limit \(pidsMax 32\)/);
  });

  it('a memory hog is OutOfMemory', async () => {
    const response = await attack('attack-memory', node('const hog = []; for (;;) hog.push(Buffer.alloc(1 << 20, 1));', { memoryMb: 64 }));
    expect(await errorOf(response)).toMatchObject({ status: 502, type: 'OutOfMemory' });
  });

  it('filling /tmp stops at tmpMb; the code dir cannot be written at all', async () => {
    const response = await attack('attack-disk', exec([
      '(head -c 100000000 /dev/zero > /tmp/fill) 2>/dev/null',
      'echo "tmp $(wc -c < /tmp/fill)"',
      '(echo x > /code/run.sh) 2>/dev/null && echo "code writable" || echo "code refused"',
      '(echo x > /code/new) 2>/dev/null && echo "code dir writable" || echo "code dir refused"',
    ].join('\n'), { tmpMb: 8 }), { executable: true });
    expect(response.status).toBe(200);
    const [tmp, code, codeDir] = (await response.text()).trim().split('\n');
    expect(Number(tmp!.split(' ')[1])).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect([code, codeDir]).toEqual(['code refused', 'code dir refused']);
  });

  it('100,000 files stop at the inode cap of the writable layer', async () => {
    const response = await attack('attack-inodes', {
      'fnbox.json': JSON.stringify({ runtime: 'python', handler: 'main.handler', timeoutMs: 10000 }),
      'main.py': 'import os\ndef handler(event, context):\n    for i in range(100000):\n        try:\n            open("/tmp/f%d" % i, "w").close()\n        except OSError as e:\n            return {"created": i, "errno": e.errno}\n    return {"created": 100000}\n',
    });
    const result = (await response.json()) as { created: number; errno: number };
    expect(result.errno).toBe(28); // ENOSPC
    expect(result.created).toBeLessThan(20_000);
  });

  it('a CPU spinner past its timeout is a Timeout, answered at the deadline', async () => {
    const started = performance.now();
    const response = await attack('attack-spin', node('for (;;) {}', { timeoutMs: 500, cpus: 1 }));
    expect(await errorOf(response)).toMatchObject({ status: 504, type: 'Timeout' });
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('a process that ignores SIGTERM, and children that daemonize, do not outlive the call', async () => {
    const name = 'attack-survivors';
    const files = exec(`case "$QUERY_STRING" in
  check) ps -eo pid,comm | grep -c sleep || true ;;
  *) (trap "" TERM HUP; exec sleep 1000) & (setsid sh -c 'sleep 1000 & sleep 1000' &) ; echo started ;;
esac`);
    const result = await underAttack(gateway, idle, name, {
      deploy: async () => void expect((await deployFiles(gateway, name, files, '', { executable: ['run.sh'] })).status).toBe(201),
      run: async () => {
        const first = await (await invoke(gateway, name)).text();
        const second = await (await invoke(gateway, name, '', { query: 'check' })).text();
        return { first, second };
      },
    });
    expect(result.first.trim()).toBe('started');
    expect(result.second.trim()).toBe('0');
  });

  it('a huge response is refused as ResponseTooLarge; one that never ends is a Timeout', async () => {
    const huge = await attack('attack-huge', node('return new Response(new Uint8Array(64 * 1024 * 1024));', { memoryMb: 256 }));
    expect(await errorOf(huge)).toMatchObject({ status: 502, type: 'Unhandled', body: { name: 'ResponseTooLarge' } });
    const endless = await attack('attack-endless', node('return new Response(new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(1024)); return new Promise((r) => setTimeout(r, 10)); } }));', { timeoutMs: 1000 }));
    expect(await errorOf(endless)).toMatchObject({ status: 504, type: 'Timeout' });
  });
});
