import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { compilePolicy, encodeProgram, policyDigest } from './bpf.js';
import { DEFAULT_POLICY, type SeccompPolicy } from './policy.js';

export { compilePolicy, encodeProgram, evaluate, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO } from './bpf.js';
export { DEFAULT_POLICY, type SeccompPolicy } from './policy.js';

/**
 * Compiles a policy and stores it under its digest (crun caches compiled
 * profiles the same way); returns the file the launcher reads.
 */
export function writePolicyFile(dir: string, policy: SeccompPolicy = DEFAULT_POLICY): string {
  const bytes = encodeProgram(compilePolicy(policy));
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `seccomp-${policyDigest(bytes)}.bpf`);
  if (!existsSync(file)) writeFileSync(file, bytes, { mode: 0o644 });
  return file;
}
