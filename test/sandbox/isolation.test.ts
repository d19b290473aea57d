// What a program sees from inside a sandbox, and what the host sees of it.
import { mkdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxHost } from '../../src/sandbox/index.js';
import { image, openTestHost, run, sh, tempDir } from '../support/env.js';

let host: SandboxHost;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ host, cleanup } = await openTestHost('isolation'));
});
afterAll(() => cleanup());

describe('inside a sandbox', () => {
  it('PID 1 is the sandbox init and only the sandbox processes are visible', async () => {
    const { output, exit } = await sh(host, 'for p in /proc/[0-9]*; do echo "${p#/proc/} $(cat $p/comm)"; done; echo "cmdline $(tr "\\0" " " < /proc/1/cmdline)"');
    expect(exit).toMatchObject({ reason: 'exited', code: 0 });
    const lines = output.trim().split('\n');
    // Nothing of the host shows, not even where the launcher lives.
    expect(lines.pop()!.trim()).toBe('cmdline fnbox-init');
    const processes = lines.map((line) => line.split(' '));
    const pids = processes.map(([pid]) => Number(pid)).sort((a, b) => a - b);
    // init, the shell, and the command substitution subshells: nothing from the host
    expect(pids[0]).toBe(1);
    expect(processes.find(([pid]) => pid === '1')?.[1]).toBe('fnbox-init');
    expect(Math.max(...pids)).toBeLessThan(50);
  });

  it('has its own hostname and only a loopback interface', async () => {
    const { output } = await sh(host, 'hostname; cat /proc/net/dev', { hostname: 'isolated-box' });
    const [name, ...netdev] = output.trim().split('\n');
    expect(name).toBe('isolated-box');
    const interfaces = netdev.slice(2).map((line) => line.trim().split(':')[0]);
    expect(interfaces).toEqual(['lo']);
  });

  it('has lo up: a function can talk to itself over localhost, and to nothing else', async () => {
    const node = image('node');
    const script = "const net = require('net'); const s = net.createServer((c) => c.end('pong')).listen(0, '127.0.0.1', () => net.connect(s.address().port, '127.0.0.1').on('data', (d) => { console.log(String(d)); net.connect(80, '10.0.0.1').on('error', (e) => { console.log(e.code); process.exit(0); }); }));";
    const { output, exit } = await run(host, { layers: [node.rootfs], argv: [node.interpreters.node!.executable, '-e', script] });
    expect(exit.code).toBe(0);
    expect(output.trim().split('\n')).toEqual(['pong', 'ENETUNREACH']);
  });

  it('boots from layers whose paths are long, and its mount table names no host path', async () => {
    // fsconfig takes 256 bytes per value: layers go to overlay as /proc/self/fd/N.
    const top = tempDir('long-layer');
    const deep = join(top, 'a-directory-name-that-is-rather-long-on-purpose'.repeat(3), 'b'.repeat(100));
    mkdirSync(join(deep, 'code'), { recursive: true });
    writeFileSync(join(deep, 'code', 'hello.txt'), 'from a long path\n');
    expect(deep.length + image('shell').rootfs.length).toBeGreaterThan(256);
    const { output, exit } = await sh(host, 'cat /code/hello.txt; cat /proc/self/mountinfo', { layers: [deep, image('shell').rootfs] }).finally(() =>
      rmSync(top, { recursive: true, force: true }),
    );
    expect(exit.code).toBe(0);
    expect(output).toContain('from a long path');
    expect(output).not.toContain(deep.slice(0, 20));
    expect(output).not.toContain('test-images');
  });

  it('cannot see the host filesystem', async () => {
    const marker = `/tmp/fnbox-host-marker-${process.pid}`;
    writeFileSync(marker, 'host secret');
    try {
      const { output } = await sh(host, `cat ${marker} 2>&1; ls /root /work /etc/shadow 2>&1; ls /`);
      expect(output).toContain('No such file');
      expect(output).not.toContain('host secret');
      expect(output).not.toMatch(/^work$/m);
    } finally {
      rmSync(marker);
    }
  });

  it('runs unprivileged: uid 1000, no capabilities, no_new_privs, seccomp filter mode', async () => {
    const { output } = await sh(host, 'id -u; id -g; grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):" /proc/self/status');
    const lines = output.trim().split('\n');
    expect(lines[0]).toBe('1000');
    expect(lines[1]).toBe('1000');
    const status = Object.fromEntries(lines.slice(2).map((line) => line.split(/:\s+/)));
    expect(status).toEqual({
      CapInh: '0000000000000000', CapPrm: '0000000000000000', CapEff: '0000000000000000',
      CapBnd: '0000000000000000', CapAmb: '0000000000000000', NoNewPrivs: '1', Seccomp: '2',
    });
  });

  it('gets a clean environment, a new session and only fds 0-2', async () => {
    const { output } = await sh(host, 'env | sort; echo "sid=$(cut -d" " -f6 /proc/self/stat) pid=$$"; ls /proc/self/fd', { env: { GREETING: 'hi' } });
    expect(output).toContain('GREETING=hi');
    expect(output).toContain('PATH=/usr/local/bin:/usr/bin:/bin');
    expect(output).not.toMatch(/^(npm_|VITEST|NODE_)/m);
    const session = output.match(/sid=(\d+) pid=(\d+)/)!;
    expect(session[1]).toBe(session[2]);
    // ls itself opens one directory fd; nothing else is inherited
    expect(output.trim().split('\n').slice(-4)).toEqual(['0', '1', '2', '3']);
  });

  it('has /proc hardened and a minimal /dev', async () => {
    const { output } = await sh(host, [
      'ls /dev | sort | tr "\\n" " "; echo',
      'grep -E " /(proc|dev|tmp)? " /proc/self/mountinfo | grep -v " /proc/" ',
      'cat /proc/kcore 2>&1 | wc -c',
      'echo x > /proc/sysrq-trigger 2>&1 || echo sysrq-refused',
      'echo x > /dev/newfile 2>&1 || echo dev-refused',
    ].join('; '));
    expect(output.split('\n')[0]!.trim().split(' ')).toEqual(['fd', 'full', 'null', 'random', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']);
    expect(output.split('\n').find((l) => / \/proc /.test(l))).toMatch(/nosuid,nodev,noexec/);
    expect(output.split('\n').find((l) => / \/ /.test(l))).toMatch(/nosuid,nodev/);
    expect(output).toContain('sysrq-refused');
    expect(output).toContain('dev-refused');
  });
});

describe('from the host', () => {
  it('every namespace differs from the host and from another sandbox', async () => {
    const shell = image('shell');
    const a = await host.boot({ layers: [shell.rootfs], argv: ['/bin/sleep', '30'] });
    const b = await host.boot({ layers: [shell.rootfs], argv: ['/bin/sleep', '30'] });
    try {
      const nsA = a.namespaces();
      const nsB = b.namespaces();
      for (const ns of ['user', 'pid', 'mnt', 'net', 'ipc', 'uts', 'cgroup']) {
        const hostNs = readlinkSync(`/proc/self/ns/${ns}`);
        expect(nsA[ns], ns).toMatch(/^\w+:\[\d+\]$/);
        expect(nsA[ns], ns).not.toBe(hostNs);
        expect(nsA[ns], ns).not.toBe(nsB[ns]);
      }
      // Each sandbox maps its own unprivileged host uid range; none is root.
      const uidA = Number(readFileSync(`/proc/${a.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1]);
      const uidB = Number(readFileSync(`/proc/${b.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1]);
      expect(uidA).toBe(a.hostIdBase + 1000);
      expect(uidB).toBe(b.hostIdBase + 1000);
      expect(Math.abs(a.hostIdBase - b.hostIdBase)).toBeGreaterThanOrEqual(65536);
      expect(readFileSync(`/proc/${a.initPid}/uid_map`, 'utf8').trim().split(/\s+/)).toEqual(['0', String(a.hostIdBase), '65536']);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });

  it('the cgroup holds the requested limits and contains the sandbox from its first instruction', async () => {
    const shell = image('shell');
    // A boot with the default limits first: the cgroups the host then makes
    // ahead hold those, and the boot below must get its own written over them.
    await (await host.boot({ layers: [shell.rootfs], argv: ['/bin/true'] })).destroy();
    // Until the host has made all it makes ahead (a sandbox parked for a boot
    // like that one takes a cgroup of the reserve too), the count moves.
    for (let i = 0; i < 400 && (host.reservedCgroups < 2 || host.parked().length === 0); i++) await sleep(5);
    const reserved = host.reservedCgroups;
    expect(reserved).toBeGreaterThan(0);
    const sandbox = await host.boot({
      layers: [shell.rootfs],
      argv: ['/bin/sleep', '30'],
      limits: { memoryBytes: 96 * 1024 * 1024, cpus: 0.5, pidsMax: 23 },
    });
    try {
      expect(host.reservedCgroups).toBe(reserved - 1);
      const cg = sandbox.cgroup;
      expect(cg.name).toBe(sandbox.id);
      const read = (path: string): string => readFileSync(path, 'utf8').trim();
      if (host.cgroups.mode === 'v2') {
        expect(read(`${cg.primaryDir}/memory.max`)).toBe(String(96 * 1024 * 1024));
        expect(read(`${cg.primaryDir}/memory.swap.max`)).toBe('0');
        expect(read(`${cg.primaryDir}/cpu.max`)).toBe('50000 100000');
        expect(read(`${cg.primaryDir}/pids.max`)).toBe('23');
      } else {
        const dirs = cg.joinedByInit;
        const file = (name: string): string => read(`${dirs.find((d) => read(`${d}/cgroup.procs`) !== undefined && exists(`${d}/${name}`))}/${name}`);
        expect(file('memory.limit_in_bytes')).toBe(String(96 * 1024 * 1024));
        expect(file('memory.memsw.limit_in_bytes')).toBe(String(96 * 1024 * 1024));
        expect(file('cpu.cfs_quota_us')).toBe('50000');
        expect(file('cpu.cfs_period_us')).toBe('100000');
        expect(file('pids.max')).toBe('23');
      }
      // Both the init and the program are members of every hierarchy's sandbox cgroup.
      const own = readFileSync(`/proc/${sandbox.pid}/cgroup`, 'utf8');
      for (const dir of cg.dirs) {
        const members = read(`${dir}/cgroup.procs`).split('\n').map(Number);
        expect(members, dir).toContain(sandbox.initPid);
        expect(members, dir).toContain(sandbox.pid);
      }
      expect(own).toContain(cg.name);
    } finally {
      await sandbox.destroy();
    }
  });

  it('a boot that finds no cgroup made ahead has the launcher make it, with its limits, before the clone', async () => {
    const shell = image('shell');
    // A named sandbox never takes one from the reserve.
    const sandbox = await host.boot({
      id: 'sb-made-by-monitor',
      layers: [shell.rootfs],
      argv: ['/bin/sleep', '30'],
      limits: { memoryBytes: 80 * 1024 * 1024, cpus: 0.25, pidsMax: 19 },
    });
    const dirs = [...sandbox.cgroup.dirs];
    try {
      // The gateway listed what to make; the monitor made it.
      expect(sandbox.spec.makeCgroup?.mkdirs).toEqual(dirs);
      const read = (path: string): string => readFileSync(path, 'utf8').trim();
      for (const [file, value] of sandbox.spec.makeCgroup!.writes) {
        // cpu.max reads back as "QUOTA PERIOD", as written; a byte limit as the number.
        expect(read(file), file).toBe(value);
      }
      const limits = sandbox.spec.makeCgroup!.writes.map(([file]) => file.split('/').pop());
      expect(limits).toContain('pids.max');
      expect(limits).toContain(host.cgroups.mode === 'v2' ? 'memory.max' : 'memory.limit_in_bytes');
      for (const dir of dirs) {
        const members = read(`${dir}/cgroup.procs`).split('\n').map(Number);
        expect(members, dir).toContain(sandbox.initPid);
        expect(members, dir).toContain(sandbox.pid);
      }
    } finally {
      await sandbox.destroy();
    }
    for (const dir of dirs) expect(exists(`${dir}/cgroup.procs`), dir).toBe(false);
  });

  it('a cgroup the launcher cannot make fails the boot with the step that failed, and leaves nothing', async () => {
    const shell = image('shell');
    const limits = { memoryBytes: 64 * 1024 * 1024, cpus: 1, cpuPeriodUs: 100_000, pidsMax: 64 };
    // Something else holds the name in the last hierarchy: the monitor's mkdir meets EEXIST there.
    const { cgroup } = host.cgroups.plan('sb-taken', limits);
    const taken = cgroup.dirs.at(-1)!;
    mkdirSync(taken);
    try {
      const boot = host.boot({ id: 'sb-taken', layers: [shell.rootfs], argv: ['/bin/true'] });
      await expect(boot).rejects.toMatchObject({ code: 'SandboxError', details: { step: 'make_cgroups', errno: 17 } });
      await expect(boot).rejects.toThrow(/id maps and cgroups failed at step make_cgroups: mkdir .*sb-taken/);
      // What the recipe made before it failed is gone (the clash too: it bore the sandbox's name).
      for (const dir of cgroup.dirs) expect(exists(`${dir}/cgroup.procs`), dir).toBe(false);
      expect(host.get('sb-taken')).toBeUndefined();
      const { exit } = await run(host, { layers: [shell.rootfs], argv: ['/bin/true'] });
      expect(exit.code).toBe(0);
    } finally {
      if (exists(`${taken}/cgroup.procs`)) rmdirSync(taken);
    }
  });
});

function exists(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}
