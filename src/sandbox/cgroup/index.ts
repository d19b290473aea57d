export { detectCgroupHost, type CgroupHost } from './detect.js';
export { realCgroupFs, type CgroupFs, type CgroupFileHandle } from './fs.js';
export type { CallMeter, CgroupDriver, CgroupEvents, CgroupLimits, CgroupMode, CgroupRecipe, CgroupUsage, SandboxCgroup } from './types.js';
export { V1CgroupDriver } from './v1.js';
export { V2CgroupDriver, GATEWAY_LEAF } from './v2.js';
export { openCgroupDriver } from './open.js';
