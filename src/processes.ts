// Whether a process id (one we wrote down earlier) still names a live process.
import { readFileSync } from 'node:fs';

/**
 * EPERM: alive, only not ours to signal. A reused pid reads as alive: the
 * safe side. A zombie (killed, not yet reaped by its parent) is not alive:
 * it holds nothing and will never give back what it claimed.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    const state = stat[stat.lastIndexOf(')') + 2];
    return state === 'Z' || state === 'X';
  } catch {
    return true; // gone between the two looks
  }
}
