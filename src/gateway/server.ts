// Wires the gateway together: sandbox host, images, function store, pools,
// HTTP server. startGateway() returns once it listens; close() is the
// graceful shutdown (stop accepting, let calls finish up to the grace
// period, destroy every sandbox, remove fnbox's cgroups).
import { serve, type ServerType } from '@hono/node-server';
import { existsSync, readdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Config } from '../config.js';
import { ImageStore, type Image } from '../images/index.js';
import type { Logger } from '../log.js';
import { Metrics } from '../metrics.js';
import { Dispatcher } from '../pool/dispatcher.js';
import { PROJECT_ROOT, SandboxHost } from '../sandbox/index.js';
import { packDirectory } from '../store/pack.js';
import { FunctionStore } from '../store/store.js';
import { createApp, type GatewayDeps } from './app.js';
import { BodyBudget } from './body-budget.js';
import { deployFunction } from './deploy.js';

export const EXAMPLES_DIR = join(PROJECT_ROOT, 'examples');

export interface Gateway {
  url: string;
  port: number;
  deps: GatewayDeps;
  close(): Promise<void>;
}

export async function startGateway(config: Config, log: Logger): Promise<Gateway> {
  const startedAt = Date.now();
  const host = await SandboxHost.open({ stateDir: config.stateDir, parkAhead: config.parkAhead });
  log.info({ cgroups: host.cgroups.description, swept: host.swept }, 'sandbox host ready');
  const images = new ImageStore({ dir: config.imagesDir ?? join(config.stateDir, 'images'), definitionsDir: join(PROJECT_ROOT, 'images'), projectRoot: PROJECT_ROOT });
  const ready: Image[] = [];
  for (const name of ['shell', 'node', 'python', 'exec']) {
    try {
      const image = images.getSync(name);
      ready.push(image);
      log.info({ image: name, id: image.id }, 'image ready');
    } catch (error) {
      log.warn({ image: name, err: (error as Error).message }, 'image unavailable: functions needing it will fail to start');
    }
  }
  // No sandbox runs yet, so nothing stands on an old image. A dir given by
  // --images-dir may be shared: there only dead builds' leftovers go.
  const collected = images.collect(ready, { exclusive: config.imagesDir === undefined });
  if (collected.images.length || collected.recipes || collected.staging) log.info(collected, 'removed images no current definition uses');
  const store = new FunctionStore(config.stateDir, {
    maxUploadBytes: config.maxUploadMb * 1024 * 1024,
    maxUnpackedBytes: 4 * config.maxUploadMb * 1024 * 1024,
    maxEntries: 10_000,
    maxRatio: 100,
  });
  const metrics = new Metrics();
  const dispatcher = new Dispatcher(host, images, store, metrics, log, {
    capacityBytes: config.capacityMb ? config.capacityMb * 1024 * 1024 : undefined,
    maxPayloadBytes: config.maxPayloadMb * 1024 * 1024,
    maxResponseBytes: Math.max(6, config.maxPayloadMb) * 1024 * 1024,
    queueWaitMs: config.queueWaitMs,
    sparesPerShape: config.spares,
    hangupGraceMs: config.hangupGraceMs,
  });
  const bodies = new BodyBudget(config.maxBufferedMb * 1024 * 1024);
  metrics.countBufferedWith(() => bodies);
  const deps: GatewayDeps = {
    store, dispatcher, host, metrics, log,
    adminToken: config.adminToken,
    invokeToken: config.invokeToken,
    maxPayloadBytes: config.maxPayloadMb * 1024 * 1024,
    maxUploadBytes: config.maxUploadMb * 1024 * 1024,
    bodies,
    bodyIdleMs: config.bodyIdleMs,
    startedAt,
  };
  if (config.examples) await deployExamples(deps, log);
  dispatcher.warmAll();

  const app = createApp(deps);
  const server: ServerType = await new Promise((resolve) => {
    const listening = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, () => resolve(listening));
  });
  const httpServer = server as import('node:http').Server;
  httpServer.requestTimeout = config.requestTimeoutMs;
  httpServer.headersTimeout = Math.min(60_000, config.requestTimeoutMs);
  httpServer.maxHeadersCount = 200;
  httpServer.maxConnections = config.maxConnections;
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info({ url, stateDir: config.stateDir }, 'fnbox gateway listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    deps,
    close: () => {
      closing ??= (async () => {
        log.info({ graceMs: config.shutdownGraceMs }, 'shutting down: no new requests, finishing calls in flight');
        const stopped = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        httpServer.closeIdleConnections();
        // Kept-alive connections would keep bringing calls to refuse: each
        // answer from now on closes its connection, so clients reconnect (and
        // find nobody listening) instead.
        httpServer.on('request', (_request, response) => response.setHeader('Connection', 'close'));
        await dispatcher.close(config.shutdownGraceMs);
        httpServer.closeAllConnections();
        await stopped;
        await host.close();
        log.info('fnbox gateway stopped; every sandbox destroyed');
      })();
      return closing;
    },
  };
}

/** Deploys each examples/<name>/ (unchanged ones are a no-op). */
async function deployExamples(deps: GatewayDeps, log: Logger): Promise<void> {
  if (!existsSync(EXAMPLES_DIR)) return;
  for (const name of readdirSync(EXAMPLES_DIR).sort()) {
    try {
      const tarball = await packDirectory(join(EXAMPLES_DIR, name));
      const outcome = await deployFunction(deps.store, deps.dispatcher, name, Readable.from([tarball]), {});
      log.info({ fn: name, version: outcome.deployment.version.slice(0, 12), created: outcome.created }, 'example deployed');
    } catch (error) {
      log.warn({ fn: name, err: (error as Error).message }, 'example not deployed');
    }
  }
}
