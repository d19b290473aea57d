import { describe, expect, it } from 'vitest';
import { buildSandboxSpec, MASKED_PATHS, parkedShape, programArgs, READONLY_PATHS, specToLauncherArgs, type SandboxOptions } from './spec.js';

const base: SandboxOptions = {
  id: 'sb-1',
  layers: ['/state/functions/f/v1', '/images/node/rootfs'],
  argv: ['/usr/bin/node', '/opt/fnbox/runtime/bootstrap.mjs'],
  limits: { memoryBytes: 128 << 20, cpus: 0.5, pidsMax: 64, tmpBytes: 64 << 20, tmpInodes: 16384, nofile: 1024 },
  hostIdBase: 100_000_000,
  rootMountpoint: '/state/run/root',
  scratchDir: '/state/run/layers',
  channel: true,
  captureLogs: true,
  cgroup: { cloneInto: '/sys/fs/cgroup/unified/fnbox/sb-1', joinedByInit: ['/sys/fs/cgroup/memory/fnbox/sb-1'] },
};

describe('buildSandboxSpec', () => {
  it('maps a private host id range and runs the program as 1000 inside', () => {
    const spec = buildSandboxSpec(base);
    expect(spec.uidMaps).toEqual([{ inside: 0, outside: 100_000_000, count: 65536 }]);
    expect(spec.gidMaps).toEqual(spec.uidMaps);
    expect(spec.uid).toBe(1000);
    expect(spec.gid).toBe(1000);
  });

  it('decides the hardening policy: masks, read-only paths, minimal /dev, rlimits', () => {
    const spec = buildSandboxSpec(base);
    expect(spec.masks).toEqual(MASKED_PATHS);
    expect(spec.readonlyPaths).toEqual(READONLY_PATHS);
    expect(spec.devNodes).toEqual(['null', 'zero', 'full', 'random', 'urandom', 'tty']);
    expect(spec.rlimits).toEqual([
      { name: 'core', soft: 0, hard: 0 },
      { name: 'nofile', soft: 1024, hard: 1024 },
      { name: 'fsize', soft: 64 << 20, hard: 64 << 20 },
      { name: 'nproc', soft: 64, hard: 64 },
    ]);
  });

  it('gives a clean environment the caller can extend but not smuggle names into', () => {
    expect(buildSandboxSpec({ ...base, env: { A: '1' } }).env).toEqual(['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/tmp', 'LANG=C.UTF-8', 'TMPDIR=/tmp', 'A=1']);
    expect(() => buildSandboxSpec({ ...base, env: { 'A=B': '1' } })).toThrow(/environment variable name/);
  });

  it('refuses what the launcher could misread', () => {
    expect(() => buildSandboxSpec({ ...base, id: '../x' })).toThrow(/sandbox id/);
    expect(() => buildSandboxSpec({ ...base, layers: ['/a:b'] })).toThrow(/without ':'/);
    expect(() => buildSandboxSpec({ ...base, layers: ['relative'] })).toThrow(/absolute/);
    expect(() => buildSandboxSpec({ ...base, argv: ['node'] })).toThrow(/absolute path/);
    expect(() => buildSandboxSpec({ ...base, hostIdBase: 0 })).toThrow(/host root/);
  });
});

describe('specToLauncherArgs', () => {
  it('serialises every decision, the program last', () => {
    const args = specToLauncherArgs(buildSandboxSpec(base), '/state/run/launcher.sock');
    const pairs = (flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
    expect(pairs('--connect')).toEqual(['/state/run/launcher.sock']);
    expect(pairs('--lower')).toEqual(base.layers);
    expect(pairs('--uid-map')).toEqual(['0:100000000:65536']);
    expect(pairs('--cgroup2')).toEqual(['/sys/fs/cgroup/unified/fnbox/sb-1']);
    expect(pairs('--cgroup1')).toEqual(['/sys/fs/cgroup/memory/fnbox/sb-1']);
    expect(pairs('--rlimit')).toContain('fsize=67108864:67108864');
    expect(pairs('--channel-fd')).toEqual(['3']);
    expect(pairs('--gate-fd')).toEqual(['4']);
    expect(pairs('--small-layer-bytes')).toEqual(['262144']);
    expect(args).toContain('--capture-logs');
    expect(args.slice(args.indexOf('--'))).toEqual(['--', ...base.argv]);
    // Made ahead (no recipe): the launcher only joins the cgroup.
    expect(args).not.toContain('--cgroup-mkdir');
    expect(args).not.toContain('--cgroup-write');
  });

  it('hands the launcher the recipe of a cgroup it is to make, in order, before it joins it', () => {
    const makeCgroup = {
      mkdirs: ['/sys/fs/cgroup/memory/fnbox/sb-1', '/sys/fs/cgroup/unified/fnbox/sb-1'],
      writes: [['/sys/fs/cgroup/memory/fnbox/sb-1/memory.limit_in_bytes', '134217728'], ['/sys/fs/cgroup/memory/fnbox/sb-1/memory.memsw.limit_in_bytes', '134217728']] as const,
    };
    const args = specToLauncherArgs(buildSandboxSpec({ ...base, makeCgroup }), '/state/run/launcher.sock');
    const first = args.indexOf('--cgroup-mkdir');
    expect(args.slice(first, first + 10)).toEqual([
      '--cgroup-mkdir', makeCgroup.mkdirs[0], '--cgroup-mkdir', makeCgroup.mkdirs[1],
      '--cgroup-write', ...makeCgroup.writes[0], '--cgroup-write', ...makeCgroup.writes[1],
    ]);
    expect(args.indexOf('--cgroup2')).toBeGreaterThan(first);
  });
});

describe('parking (--park)', () => {
  it('builds the whole sandbox but sends no program: that comes with start', () => {
    const spec = buildSandboxSpec({ ...base, env: { A: '1' }, cwd: '/tmp' });
    const parked = specToLauncherArgs(spec, '/state/run/launcher.sock', { park: true });
    expect(parked).toContain('--park');
    for (const flag of ['--', '--hostname', '--chdir', '--setenv']) expect(parked).not.toContain(flag);
    expect(programArgs(spec)).toEqual(['--chdir', '/tmp', ...spec.env.flatMap((entry) => ['--setenv', entry]), '--', ...base.argv]);
    // Unparked, the same arguments make up the whole command line.
    const whole = specToLauncherArgs(spec, '/state/run/launcher.sock');
    expect(whole.slice(whole.length - programArgs(spec).length)).toEqual(programArgs(spec));
    expect(whole[whole.indexOf('--hostname') + 1]).toBe('fnbox-sb-1');
  });

  it('counts two sandboxes alike when only their identity and program differ', () => {
    const a = buildSandboxSpec(base);
    const b = buildSandboxSpec({
      ...base,
      id: 'sb-2',
      hostIdBase: 200_000_000,
      argv: ['/bin/true'],
      env: { B: '2' },
      cwd: '/tmp',
      hostname: 'other',
      cgroup: { cloneInto: '/sys/fs/cgroup/unified/fnbox/sb-2', joinedByInit: ['/sys/fs/cgroup/memory/fnbox/sb-2'] },
      makeCgroup: { mkdirs: ['/sys/fs/cgroup/unified/fnbox/sb-2'], writes: [['/sys/fs/cgroup/unified/fnbox/sb-2/pids.max', '64']] },
    });
    expect(parkedShape(b)).toBe(parkedShape(a));
    // What the sandbox is built from is its shape.
    expect(parkedShape(buildSandboxSpec({ ...base, layers: ['/images/node/rootfs'] }))).not.toBe(parkedShape(a));
    expect(parkedShape(buildSandboxSpec({ ...base, limits: { ...base.limits, tmpBytes: 1 << 20 } }))).not.toBe(parkedShape(a));
    expect(parkedShape(buildSandboxSpec({ ...base, channel: false }))).not.toBe(parkedShape(a));
    expect(parkedShape(buildSandboxSpec({ ...base, seccompFile: '/other.bpf' }))).not.toBe(parkedShape(a));
  });
});
