import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { processAlive } from './processes.js';

function stateOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

describe('processAlive', () => {
  it('says a running process is alive and a pid nobody has is not', () => {
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(2_147_483_646)).toBe(false);
  });

  it('says a zombie is not alive: killed, it holds nothing until its parent reaps it', async () => {
    // A background subshell waits on our pipe; its shell then becomes `sleep`, which never reaps it.
    const parent = spawn('/bin/sh', ['-c', 'exec 3<&0; (read line <&3) & echo $!; exec sleep 30'], { stdio: ['pipe', 'pipe', 'ignore'] });
    try {
      const [line] = (await once(parent.stdout!, 'data')) as [Buffer];
      const child = Number(line.toString().trim());
      // Only once the shell is `sleep` may the subshell end: a shell could still reap it.
      for (let i = 0; i < 1000 && readFileSync(`/proc/${parent.pid}/comm`, 'utf8') !== 'sleep\n'; i++) await sleep(5);
      parent.stdin!.end();
      for (let i = 0; i < 1000 && stateOf(child) !== 'Z'; i++) await sleep(5);
      expect(stateOf(child)).toBe('Z');
      expect(() => process.kill(child, 0)).not.toThrow(); // the kernel still lists it
      expect(processAlive(child)).toBe(false);
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
