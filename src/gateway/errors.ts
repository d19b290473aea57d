// One place that turns any error into the JSON error of DESIGN.md §4:
// {"error":{"type":"…","message":"…", …details}} with the code's status.
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { asFnboxError, FnboxError } from '../errors.js';
import type { Logger } from '../log.js';

/** Details that stay in the logs and never go to the caller. */
const PRIVATE_DETAILS = new Set(['logs', 'output']);

export function errorResponse(c: Context, error: unknown, log?: Logger, options: { includeLogs?: boolean } = {}): Response {
  const typed = asFnboxError(error);
  if (typed.details.cancelled) {
    // The caller hung up: nobody reads this answer and nothing failed on our side.
    log?.info({ code: typed.code, invocationId: typed.details.invocationId }, 'call cancelled by the caller');
  } else if (typed.code === 'Unavailable') {
    // Retry later: a shutdown or a replaced version, not a fault of ours (a stack would only alarm).
    log?.warn({ code: typed.code, err: typed.message }, 'request refused for now');
  } else if (typed.status >= 500 && !['Unhandled', 'Crashed', 'OutOfMemory', 'Timeout', 'InitError'].includes(typed.code)) {
    log?.error({ err: error instanceof Error ? { message: error.message, stack: error.stack } : error, code: typed.code }, 'request failed');
  }
  const details = Object.fromEntries(Object.entries(typed.details).filter(([key, value]) => value !== undefined && (options.includeLogs || !PRIVATE_DETAILS.has(key))));
  const retryAfter = typed.details.retryAfterSec;
  if (typed.code === 'Throttled' || retryAfter !== undefined) c.header('Retry-After', String(retryAfter ?? 1));
  const body: { error: Record<string, unknown> } = { error: { type: typed.code, message: typed.message, ...details } };
  return c.json(body, typed.status as ContentfulStatusCode);
}

export function notFound(c: Context): Response {
  return errorResponse(c, new FnboxError('NotFound', `no route for ${c.req.method} ${new URL(c.req.url).pathname}`));
}
