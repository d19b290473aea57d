#!/usr/bin/env node
// fnbox serve | deploy <dir|tarball> | invoke <name> | ls | logs <name> | ps | rm <name>
// serve runs the gateway; the others talk to one over HTTP (FNBOX_URL).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parseConfig } from '../config.js';
import { FnboxError } from '../errors.js';
import { startGateway } from '../gateway/server.js';
import { createLogger } from '../log.js';
import { packDirectory } from '../store/pack.js';

const USAGE = `usage:
  fnbox serve [--host 127.0.0.1] [--port 8080] [--state-dir DIR] [--examples]
  fnbox deploy <dir|tarball> [--name NAME] [--runtime node|python|exec] [--handler H] [--memory-mb N] [...manifest fields]
  fnbox invoke <name> [--data TEXT | --data-file FILE] [--logs]
  fnbox ls | fnbox logs <name> | fnbox ps | fnbox rm <name>
environment: FNBOX_URL (default http://127.0.0.1:8080), FNBOX_ADMIN_TOKEN, FNBOX_INVOKE_TOKEN,
             and for serve every FNBOX_* setting of the README's configuration table`;

function parseArgs(argv: string[]): { positional: string[]; flags: Record<string, string | boolean> } {
  const positional: string[] = [];
  const flags: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [key, inline] = arg.slice(2).split(/=(.*)/s);
    if (inline !== undefined) flags[key!] = inline;
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) flags[key!] = argv[++i]!;
    else flags[key!] = true;
  }
  return { positional, flags };
}

const camel = (flag: string): string => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function gatewayUrl(): string {
  return (process.env.FNBOX_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
}

async function request(method: string, path: string, options: { body?: Buffer; token?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  const token = options.token ?? process.env.FNBOX_ADMIN_TOKEN;
  const response = await fetch(`${gatewayUrl()}${path}`, {
    method,
    body: options.body as BodyInit | undefined,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...options.headers },
  }).catch((error: Error) => {
    throw new FnboxError('Unavailable', `cannot reach the gateway at ${gatewayUrl()} (${error.message}); is \`fnbox serve\` running?`);
  });
  return response;
}

async function printJson(response: Response): Promise<void> {
  const text = await response.text();
  try {
    console.log(JSON.stringify(JSON.parse(text), null, 2));
  } catch {
    console.log(text);
  }
  if (!response.ok) process.exitCode = 1;
}

async function serveCommand(flags: Record<string, string | boolean>): Promise<void> {
  const config = parseConfig(flags);
  const log = createLogger(config.logLevel);
  const gateway = await startGateway(config, log);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'signal received');
    gateway.close().then(() => process.exit(0), (error: unknown) => {
      log.error({ err: (error as Error).message }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function deployCommand(source: string | undefined, flags: Record<string, string | boolean>): Promise<void> {
  if (!source) throw new FnboxError('InvalidRequest', 'deploy needs a directory or a tarball');
  const path = resolve(source);
  if (!existsSync(path)) throw new FnboxError('InvalidRequest', `${source} does not exist`);
  const body = statSync(path).isDirectory() ? await packDirectory(path) : readFileSync(path);
  const name = String(flags.name ?? basename(path).replace(/\.(tar\.gz|tgz|tar)$/, ''));
  const query = new URLSearchParams();
  for (const [flag, value] of Object.entries(flags)) if (flag !== 'name') query.set(camel(flag), String(value));
  const response = await request('PUT', `/functions/${encodeURIComponent(name)}${query.size ? `?${query}` : ''}`, { body, headers: { 'content-type': 'application/gzip' } });
  await printJson(response);
}

async function invokeCommand(name: string | undefined, flags: Record<string, string | boolean>): Promise<void> {
  if (!name) throw new FnboxError('InvalidRequest', 'invoke needs a function name');
  const body = typeof flags['data-file'] === 'string' ? readFileSync(flags['data-file']) : Buffer.from(typeof flags.data === 'string' ? flags.data : '');
  const response = await request('POST', `/invoke/${encodeURIComponent(name)}${flags.logs ? '?logs=1' : ''}`, {
    body,
    token: process.env.FNBOX_INVOKE_TOKEN ?? process.env.FNBOX_ADMIN_TOKEN,
  });
  const logs = response.headers.get('x-fnbox-logs');
  if (logs) process.stderr.write(Buffer.from(logs, 'base64'));
  const receipt = ['duration-ms', 'cpu-ms', 'memory-peak-bytes', 'cold-start'].map((h) => `${h}=${response.headers.get(`x-fnbox-${h}`)}`).join(' ');
  process.stderr.write(`[${response.status} ${response.headers.get('x-fnbox-invocation-id')} ${receipt}]\n`);
  process.stdout.write(Buffer.from(await response.arrayBuffer()));
  if (!response.ok) process.exitCode = 1;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const { positional, flags } = parseArgs(rest);
  switch (command) {
    case 'serve': return serveCommand(flags);
    case 'deploy': return deployCommand(positional[0], flags);
    case 'invoke': return invokeCommand(positional[0], flags);
    case 'ls': return printJson(await request('GET', '/functions'));
    case 'logs': return printJson(await request('GET', `/functions/${encodeURIComponent(positional[0] ?? '')}/logs`));
    case 'ps': return printJson(await request('GET', '/sandboxes'));
    case 'rm': return printJson(await request('DELETE', `/functions/${encodeURIComponent(positional[0] ?? '')}`));
    default:
      console.error(USAGE);
      process.exitCode = command ? 2 : 0;
  }
}

main().catch((error: unknown) => {
  if (error instanceof FnboxError) console.error(`fnbox: ${error.message}`);
  else console.error(error);
  process.exitCode = 1;
});
