// Every error fnbox reports, in one place. Each has a stable `code` (what
// callers match on), the HTTP status it maps to, and an optional `cause`.
// DESIGN.md §4 names the public error types; internal ones carry status 500.

export type ErrorCode =
  | 'FunctionNotFound'
  | 'InvalidFunction'
  | 'InvalidRequest'
  | 'PayloadTooLarge'
  | 'Throttled'
  | 'Unhandled'
  | 'Crashed'
  | 'OutOfMemory'
  | 'Timeout'
  | 'InitError'
  | 'Unauthorized'
  | 'RequestTimeout'
  | 'NotFound'
  | 'Unavailable'
  | 'SandboxError'
  | 'HostUnsupported'
  | 'Internal';

const STATUS: Record<ErrorCode, number> = {
  FunctionNotFound: 404,
  InvalidFunction: 400,
  InvalidRequest: 400,
  PayloadTooLarge: 413,
  Throttled: 429,
  Unhandled: 502,
  Crashed: 502,
  OutOfMemory: 502,
  Timeout: 504,
  InitError: 502,
  Unauthorized: 401,
  RequestTimeout: 408,
  NotFound: 404,
  Unavailable: 503,
  SandboxError: 500,
  HostUnsupported: 500,
  Internal: 500,
};

export interface ErrorDetails {
  [key: string]: unknown;
}

export class FnboxError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: ErrorDetails; status?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = `FnboxError[${code}]`;
    this.code = code;
    // A few codes depend on where they happen: InitError at deploy is the client's (400).
    this.status = options.status ?? STATUS[code];
    this.details = options.details ?? {};
  }

  toJSON(): { error: { type: ErrorCode; message: string } & ErrorDetails } {
    return { error: { type: this.code, message: this.message, ...this.details } };
  }
}

/** Wraps anything thrown into a FnboxError, keeping typed ones as they are. */
export function asFnboxError(error: unknown, fallback: ErrorCode = 'Internal'): FnboxError {
  if (error instanceof FnboxError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new FnboxError(fallback, message, { cause: error });
}
