// Builds what fnbox needs before it can run: the C launcher (with the
// machine's C compiler) and the TypeScript (with tsc). Runs on `npm install`.
// Plain JavaScript on purpose: it runs before anything is compiled.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const source = join(root, 'src', 'launcher', 'fnbox-launcher.c');
const output = join(root, 'build', 'fnbox-launcher');

function fail(message) {
  process.stderr.write(`\nfnbox build: ${message}\n\n`);
  process.exit(1);
}

function findCompiler() {
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0) return cc;
  }
  return null;
}

function buildLauncher() {
  if (process.platform !== 'linux') fail(`fnbox needs Linux (namespaces, cgroups, OverlayFS); this is ${process.platform}.`);
  const cc = findCompiler();
  if (!cc) fail('no C compiler found (tried $CC, cc, gcc, clang). Install one, e.g. `apt-get install gcc libc6-dev`, then run `npm run build`.');
  mkdirSync(dirname(output), { recursive: true });
  const flags = ['-O2', '-Wall', '-Wextra', '-Werror', '-D_FORTIFY_SOURCE=2', '-o', `${output}.tmp`, source];
  // Static when the libc allows it: no dynamic loader on the boot path.
  let result = spawnSync(cc, ['-static', ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (result.status !== 0) result = spawnSync(cc, flags, { stdio: ['ignore', 'inherit', 'pipe'] });
  if (result.status !== 0) fail(`compiling the launcher failed:\n${result.stderr}`);
  renameSync(`${output}.tmp`, output);
}

function buildTypeScript() {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) fail('typescript is not installed; run `npm install` first.');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
  } catch {
    fail('TypeScript compilation failed (see above).');
  }
}

buildLauncher();
buildTypeScript();
