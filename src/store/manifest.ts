// A function's manifest: fnbox.json in the tarball root and/or query
// parameters of the upload (query wins). Parsed once, here, with zod; every
// error names the field and the allowed range.
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { FnboxError } from '../errors.js';
import { RUNTIME_KINDS } from '../runtime/kinds.js';

export const FUNCTION_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const DEFAULT_HANDLERS = { node: 'index', python: 'main.handler', exec: 'run.sh' } as const;

const int = (name: string, min: number, max: number, fallback: number) =>
  z.coerce.number({ error: `${name} must be a number` })
    .int({ error: `${name} must be a whole number` })
    .min(min, { error: `${name} must be between ${min} and ${max}` })
    .max(max, { error: `${name} must be between ${min} and ${max}` })
    .default(fallback);

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export const ManifestSchema = z.strictObject({
  runtime: z.enum(RUNTIME_KINDS, { error: `runtime must be one of ${RUNTIME_KINDS.join(', ')}` }),
  handler: z.string().min(1).max(256).regex(/^[A-Za-z0-9_./-]+$/, { error: 'handler may use letters, digits, _ . / - only' })
    .refine((h) => !h.split('/').includes('..') && !h.startsWith('/'), { error: 'handler must stay inside the function' }).optional(),
  memoryMb: int('memoryMb', 16, 8192, 128),
  cpus: z.coerce.number({ error: 'cpus must be a number' }).min(0.01, { error: `cpus must be between 0.01 and ${availableParallelism()}` })
    .max(availableParallelism(), { error: `cpus must be between 0.01 and ${availableParallelism()}` }).default(1),
  timeoutMs: int('timeoutMs', 10, 900_000, 30_000),
  tmpMb: int('tmpMb', 1, 2048, 64),
  pidsMax: int('pidsMax', 8, 4096, 64),
  env: z.record(z.string(), z.string().max(32 * 1024, { error: 'an env value may be at most 32 KiB' }))
    .superRefine((env, ctx) => {
      const names = Object.keys(env);
      if (names.length > 128) ctx.addIssue({ code: 'custom', message: 'at most 128 env variables' });
      for (const name of names) {
        if (!ENV_NAME.test(name)) ctx.addIssue({ code: 'custom', path: [name], message: 'env names must be letters, digits and _' });
        else if (name.startsWith('FNBOX_')) ctx.addIssue({ code: 'custom', path: [name], message: 'env names starting with FNBOX_ are reserved' });
      }
    })
    .default({}),
  minWarm: int('minWarm', 0, 64, 0),
  maxConcurrency: int('maxConcurrency', 1, 1024, 10),
  queueMax: int('queueMax', 0, 100_000, 100),
  idleTtlSec: int('idleTtlSec', 1, 86_400, 300),
});

export type Manifest = z.output<typeof ManifestSchema> & { handler: string };

const FIELDS = Object.keys(ManifestSchema.shape);

/** Query parameters as manifest fields: `env.NAME=value` sets one variable. */
export function manifestFromQuery(query: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(query)) {
    if (key.startsWith('env.')) env[key.slice(4)] = value;
    else if (FIELDS.includes(key)) out[key] = value;
    else throw new FnboxError('InvalidFunction', `unknown manifest field "${key}" (allowed: ${FIELDS.join(', ')})`);
  }
  if (Object.keys(env).length) out.env = env;
  return out;
}

/** fnbox.json (optional) merged with query fields (which win), validated. */
export function parseManifest(fileText: string | undefined, query: Record<string, unknown> = {}): Manifest {
  let fromFile: Record<string, unknown> = {};
  if (fileText !== undefined) {
    try {
      const parsed: unknown = JSON.parse(fileText);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      fromFile = parsed as Record<string, unknown>;
    } catch (error) {
      throw new FnboxError('InvalidFunction', `fnbox.json is not a JSON object: ${(error as Error).message}`);
    }
  }
  const merged = { ...fromFile, ...query, env: { ...(fromFile.env as object | undefined), ...(query.env as object | undefined) } };
  const result = ManifestSchema.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.') || 'manifest'}: ${issue.message}`);
    throw new FnboxError('InvalidFunction', `invalid manifest: ${problems.join('; ')}`, { details: { problems } });
  }
  return { ...result.data, handler: result.data.handler ?? DEFAULT_HANDLERS[result.data.runtime] };
}
