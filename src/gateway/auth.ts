// Bearer tokens: one for administration (deploy, delete, introspection),
// one for invoking. Compared in constant time. Both optional on loopback.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { FnboxError } from '../errors.js';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Constant-time: both sides hashed to the same length first. */
export function tokenMatches(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

export function bearerOf(header: string | undefined): string | undefined {
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return match?.[1];
}

/** Accepts any of the given tokens; none configured means open. */
export function requireToken(...tokens: Array<string | undefined>): MiddlewareHandler {
  const accepted = tokens.filter((token): token is string => Boolean(token));
  return async function checkToken(c, next) {
    if (accepted.length === 0) return next();
    const presented = bearerOf(c.req.header('authorization'));
    // Every configured token is compared, match or not: no early exit to time.
    let ok = false;
    for (const token of accepted) ok = tokenMatches(presented ?? '', token) || ok;
    if (!presented || !ok) {
      c.header('WWW-Authenticate', 'Bearer realm="fnbox"');
      throw new FnboxError('Unauthorized', presented ? 'the bearer token is not valid for this route' : 'this route needs "Authorization: Bearer <token>"');
    }
    return next();
  };
}
