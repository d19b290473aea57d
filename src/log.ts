// Structured logs (pino) to stderr. One root logger; modules take a child.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = process.env.FNBOX_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service: 'fnbox' } }, pino.destination(2));
}

/** For tests and library use: logs nothing. */
export const silentLogger: Logger = pino({ level: 'silent' });
