// fnbox exec runtime: a warm process that runs the function's executable
// once per call, inside the same sandbox. The payload goes to its stdin, its
// stdout is the result, its stderr the call's log; a non-zero exit status is
// an error. Request details arrive as environment variables (CGI-like).
// Framing on fd 3: u32 BE header length, u32 BE body length, JSON header, body.
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { failInit, outputBudget, send, serve } from '/opt/fnbox/runtime/channel.mjs';

//
// Spare mode (FNBOX_SPARE=1) as in the node runtime: ready at once, then one
// "adopt" frame names the function's executable, settings and env.
const CODE_DIR = process.env.FNBOX_CODE_DIR || '/code';
const SPARE = process.env.FNBOX_SPARE === '1';

let HANDLER, MAX_RESPONSE, MAX_LOG, FUNCTION_NAME, functionEnv, executable;

function configure(settings, env) {
  HANDLER = settings.FNBOX_HANDLER || 'run.sh';
  MAX_RESPONSE = Number(settings.FNBOX_MAX_RESPONSE_BYTES || 6 * 1024 * 1024);
  MAX_LOG = Number(settings.FNBOX_MAX_LOG_BYTES || 64 * 1024);
  FUNCTION_NAME = settings.FNBOX_FUNCTION || 'function';
  functionEnv = { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FNBOX_'))), ...env };
  executable = HANDLER.startsWith('/') ? HANDLER : `${CODE_DIR}/${HANDLER.replace(/^\.\//, '')}`;
}

function checkExecutable() {
  if (!existsSync(executable)) throw new Error(`handler ${HANDLER} not found in the function`);
  const mode = statSync(executable).mode;
  if (!(mode & 0o111)) throw new Error(`handler ${HANDLER} is not executable (mode ${(mode & 0o777).toString(8)})`);
}

function collect(stream, limit) {
  const state = { chunks: [], budget: outputBudget(limit) };
  stream.on('data', (chunk) => {
    const kept = state.budget.take(chunk);
    if (kept.length) state.chunks.push(kept);
  });
  return state;
}

function isUtf8(buffer) {
  return Buffer.from(buffer.toString('utf8'), 'utf8').equals(buffer);
}

function run(header, body) {
  const url = new URL(header.url);
  const headers = Object.fromEntries(header.headers);
  const child = spawn(executable, [], {
    cwd: CODE_DIR,
    env: {
      ...functionEnv,
      FNBOX_INVOCATION_ID: header.id,
      FNBOX_FUNCTION_NAME: FUNCTION_NAME,
      FNBOX_DEADLINE_MS: String(header.deadline),
      REQUEST_METHOD: header.method,
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: headers['content-type'] ?? '',
      CONTENT_LENGTH: String(body.length),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // One more byte than allowed tells us the limit was crossed.
  const stdout = collect(child.stdout, MAX_RESPONSE + 1);
  const stderr = collect(child.stderr, MAX_LOG);
  child.stdin.on('error', () => {}); // the program may not read its input
  child.stdin.end(body);
  return new Promise((resolve) => {
    child.on('error', (error) => resolve(send({ k: 'error', id: header.id, type: 'Unhandled', name: 'ExecError', message: `could not run ${HANDLER}: ${error.message}` })));
    let finished = false;
    const finish = (code, signal) => {
      if (finished) return;
      finished = true;
      const logs = Buffer.concat(stderr.chunks);
      if (logs.length) send({ k: 'log', id: header.id, stream: 'stderr', truncated: stderr.budget.dropped || undefined }, logs);
      const output = Buffer.concat(stdout.chunks);
      if (code !== 0) {
        const tail = logs.toString('utf8').trim().split('\n').slice(-5).join('\n');
        const how = signal ? `was killed by signal ${signal}` : `exited with code ${code}`;
        return resolve(send({ k: 'error', id: header.id, type: 'Unhandled', name: 'ExitStatus', message: `${HANDLER} ${how}${tail ? `: ${tail}` : ''}` }));
      }
      if (output.length > MAX_RESPONSE) {
        return resolve(send({ k: 'error', id: header.id, type: 'Unhandled', name: 'ResponseTooLarge', message: `the output exceeds the limit of ${MAX_RESPONSE} bytes` }));
      }
      const type = isUtf8(output) ? 'text/plain; charset=utf-8' : 'application/octet-stream';
      resolve(send({ k: 'result', id: header.id, status: 200, headers: [['content-type', type]] }, output));
    };
    child.on('close', finish);
    // A background child may keep stdout open after the executable exited:
    // the call ends with the executable (what it left running is killed).
    child.on('exit', (code, signal) => setTimeout(() => {
      child.stdout.destroy();
      child.stderr.destroy();
      finish(code, signal);
    }, 50));
  });
}

/** Checks the function's executable and reports ready; false (and exiting) when it cannot run. */
function ready() {
  try {
    checkExecutable();
    send({ k: 'ready', runtime: 'exec', version: process.version });
    return true;
  } catch (error) {
    failInit(error);
    return false;
  }
}

// Each call's process starts in /code (spawn's cwd); this one waits in "/",
// which a root reset carries over, so it never pins a previous call's layer.
process.chdir('/');
if (SPARE) {
  send({ k: 'ready', runtime: 'exec', version: process.version, spare: true });
  let adopted = false;
  serve(async (header, body) => {
    if (adopted) return run(header, body);
    if (header.k !== 'adopt') return failInit(new Error(`a spare runtime expects "adopt" first, not "${header.k}"`));
    configure(header.settings, header.env);
    adopted = ready();
  });
} else {
  configure(process.env, {});
  if (ready()) serve(run);
}
