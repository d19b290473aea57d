// fnbox node runtime: runs inside a sandbox as an unprivileged user. Loads
// the function once, says "ready", then serves calls one at a time over
// fd 3 until the host closes it. Framing: u32 BE header length, u32 BE body
// length, JSON header, raw body (src/runtime/protocol.ts on the host side).
//
// Handlers (the manifest's "handler", Lambda's convention):
//   "index.handler"  file index.mjs/.js/.cjs, export `handler`: async (event, context)
//   "index"          the default export: a Workers module { fetch(request, env, ctx) }
//                    or a function (event, context)
//
// Spare mode (FNBOX_SPARE=1): started before any function is known, on an
// empty /code. It reports ready at once; the host then moves it onto a root
// with a function's code and sends one "adopt" frame carrying what the
// FNBOX_* variables would have said. From there on it is that function's.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { failInit, outputBudget, send, serve } from './channel.mjs';

const CODE_DIR = process.env.FNBOX_CODE_DIR || '/code';
const SPARE = process.env.FNBOX_SPARE === '1';
const INTERNAL = /^FNBOX_/;

let HANDLER, FUNCTION_NAME, MEMORY_MB, MAX_RESPONSE, MAX_LOG, functionEnv;

function configure(settings, env) {
  HANDLER = settings.FNBOX_HANDLER || 'index';
  FUNCTION_NAME = settings.FNBOX_FUNCTION || 'function';
  MEMORY_MB = Number(settings.FNBOX_MEMORY_MB || 128);
  MAX_RESPONSE = Number(settings.FNBOX_MAX_RESPONSE_BYTES || 6 * 1024 * 1024);
  MAX_LOG = Number(settings.FNBOX_MAX_LOG_BYTES || 64 * 1024);
  for (const key of Object.keys(process.env)) if (INTERNAL.test(key)) delete process.env[key];
  Object.assign(process.env, env);
  // The function's own environment (what Workers calls `env`), without ours.
  functionEnv = Object.freeze(Object.fromEntries(Object.entries(process.env).filter(([key]) => !INTERNAL.test(key))));
}

// ---- logs: what the function prints during a call goes back with the call ----

let currentCall = null;
const realWrite = { stdout: process.stdout.write.bind(process.stdout), stderr: process.stderr.write.bind(process.stderr) };

function captureStream(name) {
  process[name].write = (chunk, encoding, callback) => {
    if (typeof encoding === 'function') callback = encoding;
    const call = currentCall;
    if (!call) return realWrite[name](chunk, encoding, callback);
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk), typeof encoding === 'string' ? encoding : 'utf8');
    const kept = call.log.take(bytes);
    if (kept.length) send({ k: 'log', id: call.id, stream: name }, kept);
    if (typeof callback === 'function') callback();
    return true;
  };
}
captureStream('stdout');
captureStream('stderr');

// ---- loading the function ----

async function loadHandler() {
  const dot = HANDLER.lastIndexOf('.');
  const hasExport = dot > 0 && !HANDLER.slice(dot + 1).includes('/');
  const file = hasExport ? HANDLER.slice(0, dot) : HANDLER;
  const exportName = hasExport ? HANDLER.slice(dot + 1) : undefined;
  const candidates = ['.mjs', '.js', '.cjs', ''].map((ext) => `${CODE_DIR}/${file}${ext}`);
  const path = candidates.find((candidate) => existsSync(candidate));
  if (!path) throw new Error(`handler file not found: tried ${candidates.map((c) => c.slice(CODE_DIR.length + 1)).join(', ')}`);
  const mod = await import(pathToFileURL(path).href);
  if (exportName) {
    const fn = mod[exportName] ?? mod.default?.[exportName];
    if (typeof fn !== 'function') throw new Error(`${path.slice(CODE_DIR.length + 1)} has no exported function "${exportName}"`);
    return { style: 'lambda', fn };
  }
  const entry = mod.default ?? mod;
  if (entry && typeof entry.fetch === 'function') return { style: 'workers', module: entry };
  if (typeof entry === 'function') return { style: 'lambda', fn: entry };
  throw new Error(`${path.slice(CODE_DIR.length + 1)}: the default export is neither a Workers module with fetch() nor a function`);
}

// ---- calls ----

function lambdaEvent(header, body) {
  if (body.length === 0) return null;
  const text = body.toString('utf8');
  const contentType = header.headers.find(([key]) => key === 'content-type')?.[1] ?? '';
  if (contentType.includes('json') || /^\s*[[{"\d-tfn]/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      // not JSON after all
    }
  }
  // Text stays text; bytes that are not UTF-8 stay bytes.
  return Buffer.from(text, 'utf8').equals(body) ? text : body;
}

function lambdaResult(value) {
  if (value instanceof Uint8Array) return { status: 200, headers: [['content-type', 'application/octet-stream']], body: Buffer.from(value) };
  if (value && typeof value === 'object' && !Array.isArray(value) && 'statusCode' in value) {
    const headers = Object.entries(value.headers ?? {}).map(([key, v]) => [key.toLowerCase(), String(v)]);
    let body;
    if (value.body === undefined || value.body === null) body = Buffer.alloc(0);
    else if (value.body instanceof Uint8Array) body = Buffer.from(value.body);
    else if (typeof value.body === 'string') body = Buffer.from(value.body, value.isBase64Encoded ? 'base64' : 'utf8');
    else {
      body = Buffer.from(JSON.stringify(value.body));
      if (!headers.some(([key]) => key === 'content-type')) headers.push(['content-type', 'application/json']);
    }
    if (!headers.some(([key]) => key === 'content-type')) headers.push(['content-type', 'text/plain; charset=utf-8']);
    return { status: Number(value.statusCode) || 200, headers, body };
  }
  return { status: 200, headers: [['content-type', 'application/json']], body: Buffer.from(JSON.stringify(value ?? null)) };
}

function context(header) {
  return {
    invocationId: header.id,
    awsRequestId: header.id,
    functionName: FUNCTION_NAME,
    memoryLimitInMB: MEMORY_MB,
    deadline: header.deadline,
    getRemainingTimeInMillis: () => Math.max(0, header.deadline - Date.now()),
  };
}

async function runWorkers(module, header, body) {
  const method = header.method.toUpperCase();
  const request = new Request(header.url, {
    method,
    headers: header.headers,
    body: method === 'GET' || method === 'HEAD' ? undefined : body,
  });
  const pending = [];
  const ctx = { ...context(header), waitUntil: (promise) => pending.push(promise), passThroughOnException() {} };
  const response = await module.fetch(request, functionEnv, ctx);
  if (!(response instanceof Response)) throw new TypeError('fetch() must return a Response');
  const headers = [];
  response.headers.forEach((value, key) => {
    if (key !== 'set-cookie') headers.push([key, value]);
  });
  for (const cookie of response.headers.getSetCookie()) headers.push(['set-cookie', cookie]);
  const out = Buffer.from(await response.arrayBuffer());
  // Work the function asked to finish still belongs to this call.
  await Promise.allSettled(pending);
  return { status: response.status, headers, body: out };
}

// A call runs in /code of the root it was given. Between calls the process
// waits in "/", which a root reset carries over to the new root: nothing
// pins the previous call's layer (its files stay charged to the sandbox's
// memory while anything holds it).
async function handle(loaded, header, body) {
  const call = { id: header.id, log: outputBudget(MAX_LOG) };
  currentCall = call;
  let result;
  let failure;
  try {
    process.chdir(CODE_DIR);
    result = loaded.style === 'workers'
      ? await runWorkers(loaded.module, header, body)
      : lambdaResult(await loaded.fn(lambdaEvent(header, body), context(header)));
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
  } finally {
    currentCall = null;
    process.chdir('/');
    if (call.log.dropped) send({ k: 'log', id: call.id, stream: 'stderr', truncated: call.log.dropped }, Buffer.alloc(0));
  }
  if (failure) {
    send({ k: 'error', id: header.id, type: 'Unhandled', name: failure.name, message: failure.message, stack: failure.stack });
    return;
  }
  if (result.body.length > MAX_RESPONSE) {
    send({ k: 'error', id: header.id, type: 'Unhandled', name: 'ResponseTooLarge', message: `the response body of ${result.body.length} bytes exceeds the limit of ${MAX_RESPONSE}` });
    return;
  }
  send({ k: 'result', id: header.id, status: result.status, headers: result.headers }, result.body);
}

// ---- start ----

/** undici (Request, Response) loads lazily: pay for it at start, not in the first call. */
async function warmFetchClasses() {
  await new Response(new Request('http://warm.up/', { method: 'POST', body: 'x' }).body).arrayBuffer();
}

async function load() {
  try {
    process.chdir(CODE_DIR);
    const loaded = await loadHandler();
    if (loaded.style === 'workers') await warmFetchClasses();
    process.chdir('/');
    send({ k: 'ready', runtime: 'node', version: process.version });
    return loaded;
  } catch (error) {
    failInit(error);
    return new Promise(() => {}); // exiting
  }
}

if (SPARE) {
  // Which style the function will be is not known yet; a Workers one needs these, and they cost ~50 ms.
  await warmFetchClasses();
  process.chdir('/'); // nothing of the boot layer stays pinned past the adoption
  send({ k: 'ready', runtime: 'node', version: process.version, spare: true });
  let loaded;
  serve(async (header, body) => {
    if (loaded) return handle(loaded, header, body);
    if (header.k !== 'adopt') return failInit(new Error(`a spare runtime expects "adopt" first, not "${header.k}"`));
    configure(header.settings, header.env);
    loaded = await load();
  });
} else {
  configure(process.env, {});
  const loaded = await load();
  serve((header, body) => handle(loaded, header, body));
}
