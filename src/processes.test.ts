import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { processAlive } from './processes.js';

describe('processAlive', () => {
  it('says a running process is alive and a pid nobody has is not', () => {
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(2_147_483_646)).toBe(false);
  });

  it('says a zombie is not alive: killed, it holds nothing until its parent reaps it', async () => {
    // `true` runs in the background of a shell that then becomes `sleep`, which never reaps it.
    const parent = spawn('/bin/sh', ['-c', 'true & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const [line] = (await once(parent.stdout!, 'data')) as [Buffer];
      const zombie = Number(line.toString().trim());
      let state = '';
      for (let i = 0; i < 200 && state !== 'Z'; i++) {
        const stat = readFileSync(`/proc/${zombie}/stat`, 'utf8');
        state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        if (state !== 'Z') await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(state).toBe('Z');
      expect(() => process.kill(zombie, 0)).not.toThrow(); // the kernel still lists it
      expect(processAlive(zombie)).toBe(false);
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
