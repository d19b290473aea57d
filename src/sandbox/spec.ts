// Spec, then execute: buildSandboxSpec() turns what a caller wants into
// plain data (layers, mounts, id maps, limits), deciding every policy on the
// way; specToLauncherArgs() serialises it for the C launcher, which only
// carries it out. Both are pure and unit-tested.

import { FnboxError } from '../errors.js';
import type { CgroupRecipe } from './cgroup/index.js';

export interface IdMap {
  inside: number;
  outside: number;
  count: number;
}

export interface Rlimit {
  name: 'core' | 'nofile' | 'fsize' | 'nproc' | 'stack' | 'memlock' | 'as' | 'cpu' | 'msgqueue' | 'sigpending' | 'locks';
  soft: number;
  hard: number;
}

export interface SandboxLimits {
  memoryBytes: number;
  /** Fraction of one core; undefined = no cpu cap. */
  cpus?: number;
  pidsMax: number;
  /** Size of the writable layer (the whole root's upperdir, /tmp included). */
  tmpBytes: number;
  tmpInodes: number;
  nofile: number;
}

export interface SandboxOptions {
  id: string;
  /** Read-only lowerdirs, topmost first (function code above the image). */
  layers: string[];
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  hostname?: string;
  limits: SandboxLimits;
  /** First host uid/gid of this sandbox's private range. */
  hostIdBase: number;
  /** Empty host directory used as the attach point inside the private mount namespace. */
  rootMountpoint: string;
  /** Empty host directory where older kernels need each layer's tmpfs attached (monitor-private). */
  scratchDir: string;
  /** Hand the program a channel on fd 3. */
  channel?: boolean;
  /** Send the program's stdout/stderr to the gateway. */
  captureLogs?: boolean;
  seccompFile?: string;
  cgroup?: { cloneInto?: string; joinedByInit: readonly string[] };
  /** How the monitor makes that cgroup before it clones; absent when it exists already. */
  makeCgroup?: CgroupRecipe;
}

export interface SandboxSpec {
  id: string;
  lowers: string[];
  upperBytes: number;
  upperInodes: number;
  /** A writable layer holding at most this much may be dropped after the next call has begun (see SMALL_LAYER_BYTES). */
  smallLayerBytes: number;
  rootMountpoint: string;
  scratchDir: string;
  devNodes: string[];
  masks: string[];
  readonlyPaths: string[];
  /** Namespaced sysctls, as paths under /proc/sys. */
  sysctls: Record<string, string>;
  hostname: string;
  /** Bring lo up: a function may talk to itself over localhost. */
  loopbackUp: boolean;
  uidMaps: IdMap[];
  gidMaps: IdMap[];
  uid: number;
  gid: number;
  cwd: string;
  env: string[];
  rlimits: Rlimit[];
  channelFd?: number;
  /** Where the program reads one byte per root swap (with a channel only). */
  gateFd?: number;
  captureLogs: boolean;
  seccompFile?: string;
  /** Made by the monitor before it clones (the boot's own cgroup); absent when made ahead. */
  makeCgroup?: CgroupRecipe;
  cloneIntoCgroup?: string;
  attachCgroups: string[];
  argv: string[];
}

/** The uid/gid the program runs as inside; 0 is kept for the sandbox's init. */
export const PROGRAM_UID = 1000;
export const PROGRAM_GID = 1000;
/** Ids mapped per sandbox: 0..65535 inside, a private host range outside. */
export const ID_RANGE = 65536;
export const CHANNEL_FD = 3;
/**
 * The runtime's gate: the monitor writes a byte to it once each root swap
 * is done, and a call frame says how many swaps the runtime must have seen
 * before it acts on the call (src/runtime/protocol.ts, InvokeHeader.gate).
 */
export const GATE_FD = 4;
/**
 * A call that wrote at most this much may have the next call begin before
 * its old layer is gone: the monitor lets the runtime through first and
 * drops the layer after, and the gateway sends the next call without
 * waiting for the reset. A bigger layer goes first, so that its memory is
 * not counted against the next call (its peak, its OOM margin); a small
 * one is at worst counted in that call's peak.
 */
export const SMALL_LAYER_BYTES = 256 * 1024;

/** Devices a program may need and that reveal nothing of the host. */
export const DEV_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** runc's masked paths: kernel internals a sandbox has no business reading. */
export const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
  '/proc/sched_debug', '/proc/scsi', '/proc/timer_list', '/proc/timer_stats', '/sys/firmware',
];

/** runc's read-only paths: knobs that would change the host kernel. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

const ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;
/** What fnbox sets as a sandbox's hostname: one word the kernel takes (at most 64 bytes). */
export const HOSTNAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/**
 * A lowerdir the launcher can take: absolute, and free of overlay's list
 * separators and of the newline that ends a control command (adopt).
 */
export function isLayerPath(path: string): boolean {
  return path.startsWith('/') && !/[:,\n]/.test(path);
}

function invalid(message: string): FnboxError {
  return new FnboxError('SandboxError', `invalid sandbox spec: ${message}`);
}

export function buildSandboxSpec(options: SandboxOptions): SandboxSpec {
  if (!ID_PATTERN.test(options.id)) throw invalid(`sandbox id ${JSON.stringify(options.id)} must match ${ID_PATTERN}`);
  if (options.layers.length === 0) throw invalid('a sandbox needs at least one layer');
  for (const layer of options.layers) {
    if (!isLayerPath(layer)) {
      throw invalid(`layer ${JSON.stringify(layer)} must be an absolute path without ':', ',' or a newline`);
    }
  }
  if (options.argv.length === 0 || !options.argv[0]!.startsWith('/')) throw invalid('argv[0] must be an absolute path inside the sandbox');
  if (!Number.isInteger(options.hostIdBase) || options.hostIdBase < ID_RANGE) {
    throw invalid(`hostIdBase ${options.hostIdBase} must be an integer >= ${ID_RANGE}: host root and system ids stay unmapped`);
  }
  const hostname = options.hostname ?? `fnbox-${options.id}`.slice(0, 63);
  if (!HOSTNAME_PATTERN.test(hostname)) throw invalid(`hostname ${JSON.stringify(hostname)} must match ${HOSTNAME_PATTERN}`);
  const { limits } = options;
  const env = {
    PATH: DEFAULT_PATH,
    HOME: '/tmp',
    LANG: 'C.UTF-8',
    TMPDIR: '/tmp',
    ...options.env,
  };
  for (const key of Object.keys(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw invalid(`environment variable name ${JSON.stringify(key)} is not valid`);
  }
  const idMap = [{ inside: 0, outside: options.hostIdBase, count: ID_RANGE }];
  return {
    id: options.id,
    lowers: [...options.layers],
    upperBytes: limits.tmpBytes,
    upperInodes: limits.tmpInodes,
    smallLayerBytes: SMALL_LAYER_BYTES,
    rootMountpoint: options.rootMountpoint,
    scratchDir: options.scratchDir,
    devNodes: [...DEV_NODES],
    masks: [...MASKED_PATHS],
    readonlyPaths: [...READONLY_PATHS],
    // Defense in depth behind seccomp: this user namespace may not create another.
    sysctls: { 'user/max_user_namespaces': '0' },
    hostname,
    loopbackUp: true,
    uidMaps: idMap,
    gidMaps: idMap,
    uid: PROGRAM_UID,
    gid: PROGRAM_GID,
    cwd: options.cwd ?? '/',
    env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    rlimits: [
      // No core files: they would fill the writable layer and leak memory contents.
      { name: 'core', soft: 0, hard: 0 },
      { name: 'nofile', soft: limits.nofile, hard: limits.nofile },
      // A single file can never be bigger than the whole writable layer.
      { name: 'fsize', soft: limits.tmpBytes, hard: limits.tmpBytes },
      // Counted per host uid, and each sandbox has its own: a second fork-bomb brake.
      { name: 'nproc', soft: limits.pidsMax, hard: limits.pidsMax },
    ],
    channelFd: options.channel ? CHANNEL_FD : undefined,
    gateFd: options.channel ? GATE_FD : undefined,
    captureLogs: options.captureLogs ?? false,
    seccompFile: options.seccompFile,
    makeCgroup: options.makeCgroup,
    cloneIntoCgroup: options.cgroup?.cloneInto,
    attachCgroups: [...(options.cgroup?.joinedByInit ?? [])],
    argv: [...options.argv],
  };
}

/**
 * What a spec runs, as opposed to how its sandbox is built: the arguments
 * a parked sandbox (`--park`) takes with its "start" command (which names
 * the hostname too).
 */
export function programArgs(spec: SandboxSpec): string[] {
  const args = ['--chdir', spec.cwd];
  for (const entry of spec.env) args.push('--setenv', entry);
  args.push('--', ...spec.argv);
  return args;
}

/**
 * The launcher's command line for a spec (after the program name). With
 * `park`, the sandbox is built but its program waits for a start command
 * carrying programArgs(): two specs whose parked command lines match (but
 * for the sandbox's own id, ids and cgroup) build the same sandbox.
 */
export function specToLauncherArgs(spec: SandboxSpec, connectPath?: string, options: { park?: boolean } = {}): string[] {
  const args: string[] = [];
  const add = (flag: string, value: string | number): void => {
    args.push(flag, String(value));
  };
  if (connectPath) {
    add('--connect', connectPath);
    add('--id', spec.id);
  }
  if (options.park) args.push('--park');
  for (const lower of spec.lowers) add('--lower', lower);
  add('--upper-size', spec.upperBytes);
  add('--upper-inodes', spec.upperInodes);
  add('--small-layer-bytes', spec.smallLayerBytes);
  add('--root-mountpoint', spec.rootMountpoint);
  add('--scratch-dir', spec.scratchDir);
  for (const node of spec.devNodes) add('--dev-node', node);
  for (const mask of spec.masks) add('--mask', mask);
  for (const path of spec.readonlyPaths) add('--readonly', path);
  for (const [key, value] of Object.entries(spec.sysctls)) add('--sysctl', `${key}=${value}`);
  if (spec.loopbackUp) args.push('--loopback-up');
  for (const map of spec.uidMaps) add('--uid-map', `${map.inside}:${map.outside}:${map.count}`);
  for (const map of spec.gidMaps) add('--gid-map', `${map.inside}:${map.outside}:${map.count}`);
  for (const dir of spec.makeCgroup?.mkdirs ?? []) add('--cgroup-mkdir', dir);
  for (const [file, value] of spec.makeCgroup?.writes ?? []) args.push('--cgroup-write', file, value);
  if (spec.cloneIntoCgroup) add('--cgroup2', spec.cloneIntoCgroup);
  for (const dir of spec.attachCgroups) add('--cgroup1', dir);
  add('--uid', spec.uid);
  add('--gid', spec.gid);
  for (const limit of spec.rlimits) add('--rlimit', `${limit.name}=${limit.soft}:${limit.hard}`);
  if (spec.channelFd !== undefined) add('--channel-fd', spec.channelFd);
  if (spec.gateFd !== undefined) add('--gate-fd', spec.gateFd);
  if (spec.captureLogs) args.push('--capture-logs');
  if (spec.seccompFile) add('--seccomp-file', spec.seccompFile);
  if (!options.park) args.push('--hostname', spec.hostname, ...programArgs(spec));
  return args;
}

/**
 * What makes two sandboxes interchangeable before their program starts:
 * everything they are built from but their identity (id, host ids, cgroup).
 */
export function parkedShape(spec: SandboxSpec): string {
  return JSON.stringify(specToLauncherArgs({ ...spec, id: '', uidMaps: [], gidMaps: [], makeCgroup: undefined, cloneIntoCgroup: undefined, attachCgroups: [] }, undefined, { park: true }));
}
