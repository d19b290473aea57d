// A real gateway on a loopback port, in this process, with its own state dir.
import { rmSync } from 'node:fs';
import { parseConfig, type Config } from '../../src/config.js';
import { startGateway, type Gateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/log.js';
import { TEST_IMAGE_DIR, tempDir } from './env.js';
import { filesTar, makeTar, type TarEntry } from './tarball.js';

export interface TestGateway extends Gateway {
  stateDir: string;
  stop(): Promise<void>;
}

export async function startTestGateway(prefix: string, overrides: Record<string, string | boolean | undefined> = {}, stateDir = tempDir(prefix)): Promise<TestGateway> {
  const config: Config = parseConfig({ port: '0', stateDir, imagesDir: TEST_IMAGE_DIR, logLevel: 'silent', ...overrides }, {});
  const gateway = await startGateway(config, silentLogger);
  return {
    ...gateway,
    stateDir,
    stop: async () => {
      await gateway.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export async function deployFiles(gateway: Gateway, name: string, files: Record<string, string>, query = '', options: { executable?: string[]; token?: string } = {}): Promise<Response> {
  const body = await filesTar(files, { gzip: true, executable: options.executable });
  return put(gateway, name, body, query, options.token);
}

export async function deployEntries(gateway: Gateway, name: string, entries: TarEntry[], query = ''): Promise<Response> {
  return put(gateway, name, await makeTar(entries), query);
}

export function put(gateway: Gateway, name: string, body: Buffer, query = '', token?: string): Promise<Response> {
  return fetch(`${gateway.url}/functions/${name}${query ? `?${query}` : ''}`, {
    method: 'PUT',
    body: body as unknown as BodyInit,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
}

export function invoke(gateway: Gateway, name: string, body: string | Buffer = '', init: { headers?: Record<string, string>; query?: string } = {}): Promise<Response> {
  return fetch(`${gateway.url}/invoke/${name}${init.query ? `?${init.query}` : ''}`, { method: 'POST', body: body as unknown as BodyInit, headers: init.headers });
}

export async function errorOf(response: Response): Promise<{ status: number; type: string; message: string; body: Record<string, unknown> }> {
  const body = (await response.json()) as { error: { type: string; message: string } & Record<string, unknown> };
  return { status: response.status, type: body.error.type, message: body.error.message, body: body.error };
}

export const NODE_ECHO = {
  'fnbox.json': JSON.stringify({ runtime: 'node', handler: 'index' }),
  'index.mjs': `export default { async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname.endsWith('/sleep')) await new Promise((r) => setTimeout(r, Number(url.searchParams.get('ms') ?? 100)));
    const body = await request.text();
    return new Response(JSON.stringify({ version: env.VERSION ?? 'v1', method: request.method, path: url.pathname, query: url.search, body, auth: request.headers.get('authorization') }), { headers: { 'content-type': 'application/json', 'x-fn': 'echo' } });
  } };`,
};
