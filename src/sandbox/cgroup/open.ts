import { detectCgroupHost, type CgroupHost } from './detect.js';
import { realCgroupFs, type CgroupFs } from './fs.js';
import type { CgroupDriver } from './types.js';
import { V1CgroupDriver } from './v1.js';
import { V2CgroupDriver } from './v2.js';

/** Detects the host's cgroup layout once and returns the matching driver. */
export function openCgroupDriver(parentName: string, host: CgroupHost = detectCgroupHost(), fs: CgroupFs = realCgroupFs): CgroupDriver {
  return host.mode === 'v2' ? new V2CgroupDriver(host, parentName, fs) : new V1CgroupDriver(host, parentName, fs);
}
