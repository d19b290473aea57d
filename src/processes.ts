// Whether a process id (one we wrote down earlier) still names a live process.

/** EPERM: alive, only not ours to signal. A reused pid reads as alive: the safe side. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
