// Image definitions (images/*.json): which host binaries, trees and project
// files make up a base root filesystem. Parsed once with zod.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FnboxError } from '../errors.js';

const ImageDefinitionSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9-]*$/),
  description: z.string().default(''),
  extends: z.string().optional(),
  /** Host commands; a trailing "?" marks one the image can do without. */
  binaries: z.array(z.string()).default([]),
  /** A language runtime resolved from the host at build time. */
  interpreter: z.enum(['node', 'python']).optional(),
  /** Project directories copied in (runtimes), relative to the project root. */
  copy: z.array(z.object({ from: z.string(), to: z.string().startsWith('/') })).default([]),
});

export type ImageDefinition = z.infer<typeof ImageDefinitionSchema>;

/** A definition with its `extends` chain folded in. */
export interface ResolvedDefinition {
  name: string;
  chain: string[];
  binaries: string[];
  interpreters: Array<'node' | 'python'>;
  copy: Array<{ from: string; to: string }>;
}

export function loadDefinition(imagesDir: string, name: string): ImageDefinition {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(join(imagesDir, `${name}.json`), 'utf8'));
  } catch (error) {
    throw new FnboxError('InvalidRequest', `unknown image "${name}" (no ${name}.json in ${imagesDir})`, { cause: error });
  }
  const parsed = ImageDefinitionSchema.safeParse(raw);
  if (!parsed.success) {
    throw new FnboxError('Internal', `images/${name}.json is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

export function resolveDefinition(imagesDir: string, name: string, seen: string[] = []): ResolvedDefinition {
  if (seen.includes(name)) throw new FnboxError('Internal', `image ${name} extends itself (${[...seen, name].join(' → ')})`);
  const own = loadDefinition(imagesDir, name);
  const base = own.extends ? resolveDefinition(imagesDir, own.extends, [...seen, name]) : undefined;
  return {
    name,
    chain: [...(base?.chain ?? []), name],
    binaries: [...new Set([...(base?.binaries ?? []), ...own.binaries])],
    interpreters: [...new Set([...(base?.interpreters ?? []), ...(own.interpreter ? [own.interpreter] : [])])],
    copy: [...(base?.copy ?? []), ...own.copy],
  };
}
