export * from './host.js';
export * from './sandbox.js';
export * from './spec.js';
export { Launcher, LAUNCHER_PHASES, type LaunchedSandbox, type LauncherEvent } from './launcher.js';
export { IdRanges, DEFAULT_ID_RANGES, type IdRangeOptions } from './ids.js';
export * from './cgroup/index.js';
