// Gateway configuration, parsed once at the edge: command-line flags and
// FNBOX_* environment variables mean the same (flags win).
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { FnboxError } from './errors.js';
import { PROJECT_ROOT } from './sandbox/index.js';

const mb = (name: string, min: number, max: number, fallback: number) =>
  z.coerce.number({ error: `${name} must be a number` }).int().min(min, { error: `${name} must be between ${min} and ${max}` }).max(max, { error: `${name} must be between ${min} and ${max}` }).default(fallback);

export const ConfigSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  stateDir: z.string().min(1).default(join(PROJECT_ROOT, '.fnbox', 'state')),
  imagesDir: z.string().optional(),
  adminToken: z.string().min(16, { error: 'FNBOX_ADMIN_TOKEN must be at least 16 characters' }).optional(),
  invokeToken: z.string().min(16, { error: 'FNBOX_INVOKE_TOKEN must be at least 16 characters' }).optional(),
  /** Sum of all sandboxes' memory limits; default: half the machine. */
  capacityMb: z.coerce.number().int().min(64).optional(),
  maxPayloadMb: mb('maxPayloadMb', 1, 256, 6),
  maxUploadMb: mb('maxUploadMb', 1, 4096, 64),
  /** Invocation payloads (read, queued, running) and unsent responses held in memory at once; at least maxPayloadMb. */
  maxBufferedMb: mb('maxBufferedMb', 1, 65_536, 512),
  queueWaitMs: mb('queueWaitMs', 0, 600_000, 10_000),
  shutdownGraceMs: mb('shutdownGraceMs', 0, 600_000, 10_000),
  /** An HTTP request (upload included) may take at most this long. */
  requestTimeoutMs: mb('requestTimeoutMs', 1000, 3_600_000, 960_000),
  /**
   * Open HTTP connections at once; more are closed as they arrive. Each one
   * holds a file descriptor, and a connection flood must not leave the
   * gateway none for its sandboxes (each takes several).
   */
  maxConnections: mb('maxConnections', 1, 1_000_000, 4096),
  /** A request body that sends nothing for this long is cut off (slow uploads). */
  bodyIdleMs: mb('bodyIdleMs', 100, 600_000, 30_000),
  /** A running call whose caller hung up may run on this long before it is stopped (its sandbox then replaced). */
  hangupGraceMs: mb('hangupGraceMs', 0, 900_000, 1000),
  /** Spare runtimes kept per function shape in use, adopted by cold starts; 0 turns them off. */
  spares: mb('spares', 0, 8, 1),
  /**
   * Sandboxes kept booted ahead of their program in the shape of the latest
   * boot (src/sandbox/parked.ts). Off by default here: the gateway's cold
   * starts adopt spare runtimes, and with many function shapes a parked
   * sandbox is often let go unused, a boot's CPU spent for nothing.
   */
  parkAhead: mb('parkAhead', 0, 8, 0),
  /** Deploy the examples/ functions at start. */
  examples: z.coerce.boolean().default(false),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Config = z.output<typeof ConfigSchema>;

const ENV: Record<string, keyof Config> = {
  FNBOX_HOST: 'host', FNBOX_PORT: 'port', FNBOX_STATE_DIR: 'stateDir', FNBOX_IMAGES_DIR: 'imagesDir',
  FNBOX_ADMIN_TOKEN: 'adminToken', FNBOX_INVOKE_TOKEN: 'invokeToken', FNBOX_CAPACITY_MB: 'capacityMb',
  FNBOX_MAX_PAYLOAD_MB: 'maxPayloadMb', FNBOX_MAX_UPLOAD_MB: 'maxUploadMb', FNBOX_MAX_BUFFERED_MB: 'maxBufferedMb', FNBOX_QUEUE_WAIT_MS: 'queueWaitMs',
  FNBOX_SHUTDOWN_GRACE_MS: 'shutdownGraceMs', FNBOX_REQUEST_TIMEOUT_MS: 'requestTimeoutMs', FNBOX_BODY_IDLE_MS: 'bodyIdleMs', FNBOX_MAX_CONNECTIONS: 'maxConnections', FNBOX_HANGUP_GRACE_MS: 'hangupGraceMs', FNBOX_SPARES: 'spares', FNBOX_PARK_AHEAD: 'parkAhead', FNBOX_EXAMPLES: 'examples',
  FNBOX_LOG_LEVEL: 'logLevel',
};

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** Flags (`--state-dir x`, `--port=1`) over environment over defaults. */
export function parseConfig(flags: Record<string, string | boolean>, env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const [variable, key] of Object.entries(ENV)) if (env[variable] !== undefined && env[variable] !== '') raw[key] = env[variable];
  for (const [flag, value] of Object.entries(flags)) {
    const key = flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!(key in ConfigSchema.shape)) throw new FnboxError('InvalidRequest', `unknown option --${flag}`);
    raw[key] = value;
  }
  if (raw.examples === 'false' || raw.examples === '0') raw.examples = false;
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new FnboxError('InvalidRequest', `invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const config = parsed.data;
  if (config.maxBufferedMb < config.maxPayloadMb) {
    throw new FnboxError('InvalidRequest', `invalid configuration: maxBufferedMb (${config.maxBufferedMb}) must be at least maxPayloadMb (${config.maxPayloadMb}), or a payload of the largest allowed size could never be held`);
  }
  if (!isLoopback(config.host) && (!config.adminToken || !config.invokeToken)) {
    throw new FnboxError('InvalidRequest', `refusing to listen on ${config.host} without FNBOX_ADMIN_TOKEN and FNBOX_INVOKE_TOKEN: beyond loopback, every route needs a token`);
  }
  return config;
}
