// A function shares its process with the runtime, so it can write to the
// runtime's channel (fd 3) itself: frames the host must never trust. Each
// hostile frame fails that call with a typed error and costs the attacker
// its sandbox; the gateway, and every other function, go on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFiles, errorOf, startTestGateway, type TestGateway } from '../support/gateway.js';
import { setUpWitness, underAttack } from './helpers.js';

let gateway: TestGateway;
let idle: number;
beforeAll(async () => {
  gateway = await startTestGateway('adversarial-channel');
  idle = await setUpWitness(gateway);
});
afterAll(() => gateway.stop());

const FRAME_WRITER = `import fs from 'node:fs';
function frame(json, bodyLength = 0) {
  const header = Buffer.from(json);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(header.length, 0);
  prefix.writeUInt32BE(bodyLength, 4);
  return Buffer.concat([prefix, header]);
}
const ATTACKS = {
  'null-header': () => frame('null'),
  'not-json': () => frame('{nope'),
  'unknown-kind': () => frame(JSON.stringify({ k: 'invoke', id: 'x' })),
  'headers-not-pairs': () => frame(JSON.stringify({ k: 'result', id: 'x', status: 200, headers: 5 })),
  'status-not-number': () => frame(JSON.stringify({ k: 'result', id: 'x', status: '200', headers: [] })),
  'log-count-not-number': () => frame(JSON.stringify({ k: 'log', id: 'x', stream: 'stdout', truncated: 'lots' })),
  'huge-header': () => { const prefix = Buffer.alloc(8); prefix.writeUInt32BE(0x7fffffff, 0); return prefix; },
  // A well-formed answer to a call that is not this one: ignored, never delivered to anyone.
  'other-call': () => frame(JSON.stringify({ k: 'result', id: 'not-this-call', status: 200, headers: [] })),
};
`;

const ATTACKER = {
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', minWarm: 1 }),
  'index.mjs': `${FRAME_WRITER}
export default { async fetch(request) {
  const attack = new URL(request.url).pathname.slice(1);
  fs.writeSync(3, ATTACKS[attack]());
  return new Response('the call went on');
} };`,
};

/** Deploys `files` as `name`, then runs `run` as the attack, the witness timed meanwhile. */
function attack<T>(name: string, files: Record<string, string>, run: () => Promise<T>): Promise<T> {
  return underAttack(gateway, idle, name, {
    deploy: async () => {
      const deployed = await deployFiles(gateway, name, files);
      expect(deployed.status, await deployed.clone().text()).toBe(201);
    },
    run,
  });
}

const BROKEN: string[] = ['null-header', 'not-json', 'unknown-kind', 'headers-not-pairs', 'status-not-number', 'log-count-not-number', 'huge-header'];

describe('frames the function writes to the channel itself', () => {
  it('each malformed frame fails its call as a ProtocolError, and the gateway and the witness go on', async () => {
    const outcomes = await attack('attack-channel', ATTACKER, async () => {
      const seen: Array<{ kind: string; status: number; text: string }> = [];
      for (const kind of [...BROKEN, 'other-call']) {
        const response = await fetch(`${gateway.url}/fn/attack-channel/${kind}`, { method: 'POST' });
        seen.push({ kind, status: response.status, text: await response.text() });
      }
      return seen;
    });
    for (const { kind, status, text } of outcomes.filter((outcome) => BROKEN.includes(outcome.kind))) {
      expect(status, `${kind}: ${text}`).toBe(502);
      const { error } = JSON.parse(text) as { error: { type: string; name: string; message: string } };
      expect(error, kind).toMatchObject({ type: 'Unhandled', name: 'ProtocolError' });
      expect(error.message, kind).toMatch(/^the sandbox broke the channel protocol \(does the function write to fd 3\?\): /);
    }
    // A forged answer for another call id is dropped: this call gets its own.
    expect(outcomes.find((outcome) => outcome.kind === 'other-call')).toMatchObject({ status: 200, text: 'the call went on' });
    // The gateway is alive and still serves (the witness did throughout).
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
  });

  it('a flood of well-formed log frames is cut off at what the log cap allows, and the witness keeps its pace meanwhile', async () => {
    const flood = {
      'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', timeoutMs: 3000 }),
      'index.mjs': `${FRAME_WRITER}
export default { async fetch(request, env, ctx) {
  // This call's own id: frames the host attributes to the call, the costliest kind.
  const one = frame(JSON.stringify({ k: 'log', id: ctx.invocationId, stream: 'stdout' }), 1);
  const batch = Buffer.concat(Array.from({ length: 1000 }, () => Buffer.concat([one, Buffer.from('x')])));
  const until = Date.now() + 2000;
  // The runtime made fd 3 non-blocking: write whole frames, or the stream tears (a ProtocolError).
  while (Date.now() < until) {
    for (let at = 0; at < batch.length;) {
      try { at += fs.writeSync(3, batch, at); } catch (error) { if (error.code !== 'EAGAIN') throw error; }
    }
  }
  return new Response('flooded');
} };`,
    };
    const response = await attack('attack-log-flood', flood, () => fetch(`${gateway.url}/fn/attack-log-flood/`, { method: 'POST' }));
    const error = await errorOf(response);
    expect(error).toMatchObject({ status: 502, type: 'Unhandled', body: { name: 'ProtocolError' } });
    expect(error.message).toMatch(/it sent \d+ frames for one call; its logs \(maxLogBytes 65536\) allow at most 65552/);
  });

  it('a child printing as fast as it can is read slowly past the log cap: the call ends normally, the witness keeps its pace', async () => {
    const flood = {
      'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', timeoutMs: 3000 }),
      'index.mjs': `import { spawn } from 'node:child_process';
export default { async fetch() {
  spawn('/bin/sh', ['-c', 'yes "$(printf %0100d 0)"'], { stdio: 'inherit' });
  await new Promise((resolve) => setTimeout(resolve, 2000));
  return new Response('flooded');
} };`,
    };
    const response = await attack('attack-stray-flood', flood, () => fetch(`${gateway.url}/fn/attack-stray-flood/?logs=1`, { method: 'POST' }));
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('flooded');
    // The logs kept are the child's lines up to the cap; what was read past it is counted as dropped.
    const tail = Buffer.from(response.headers.get('x-fnbox-logs')!, 'base64').toString();
    expect(tail).toMatch(/\n0{100}\n0+\n\[fnbox: log truncated, \d+ bytes dropped\]\n$/);
    console.log(`the printing child's sandbox used ${response.headers.get('x-fnbox-cpu-ms')} ms of CPU in 2 s`);
  });

  it('a function that reads its runtime\'s gate (fd 4) only stalls its own next call: a Timeout, then a fresh sandbox', async () => {
    const thief = {
      'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index', timeoutMs: 1500 }),
      'index.mjs': `import fs from 'node:fs';
export default { async fetch(request) {
  if (new URL(request.url).pathname !== '/steal') return new Response('fine');
  fs.writeFileSync('/tmp/x', 'x'); // so the root is reset after this call
  // Once this call has answered, take the announcement of that reset before the runtime can.
  // setImmediate, not setTimeout(0): it runs right after this turn, before the runtime can read
  // the next call's frame; a 1 ms timer lost that race whenever the next call came sooner.
  setImmediate(() => fs.readSync(4, Buffer.alloc(1)));
  return new Response('stolen');
} };`,
    };
    const outcomes = await attack('attack-gate', thief, async () => {
      const statuses: number[] = [];
      for (const path of ['/steal', '/again', '/again']) statuses.push((await fetch(`${gateway.url}/fn/attack-gate${path}`, { method: 'POST' })).status);
      return statuses;
    });
    // The call after the theft waits at the gate for a swap that was already announced, until its deadline.
    expect(outcomes).toEqual([200, 504, 200]);
  });

  it('a module that writes garbage to the channel while loading is refused at deploy as an InitError', async () => {
    const deployed = await deployFiles(gateway, 'attack-channel-load', {
      'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index' }),
      'index.mjs': `${FRAME_WRITER}\nfs.writeSync(3, ATTACKS['null-header']());\nexport default { async fetch() { return new Response('never'); } };`,
    });
    const error = await errorOf(deployed);
    expect(error).toMatchObject({ status: 400, type: 'InitError' });
    expect(error.message).toMatch(/the node runtime failed to start: the sandbox broke the channel protocol/);
    expect((await fetch(`${gateway.url}/functions/attack-channel-load`)).status).toBe(404);
  });
});
