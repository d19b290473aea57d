// Functions that try to leave their sandbox: privileged syscalls, host
// files through /proc and /sys, devices, terminals, sockets, the network.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFiles, invoke, startTestGateway, type TestGateway } from '../support/gateway.js';
import { setUpWitness, underAttack } from './helpers.js';

// A python function that reports, for each attempt, "ok" or the errno name.
const PROBE = {
  'fnbox.json': JSON.stringify({ runtime: 'python', handler: 'main.handler', timeoutMs: 5000 }),
  'main.py': String.raw`
import ctypes, errno, fcntl, json, os, socket, time
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "bpf": 321,
      "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "keyctl": 250, "add_key": 248,
      "request_key": 249, "ptrace": 101, "reboot": 169, "kexec_load": 246, "init_module": 175,
      "open_by_handle_at": 304, "fsopen": 430, "fsmount": 432, "move_mount": 429, "open_tree": 428,
      "syslog": 103, "acct": 163, "swapon": 167, "settimeofday": 164, "clock_settime": 227, "iopl": 172,
      "ioperm": 173, "process_vm_readv": 310, "kcmp": 312, "pidfd_getfd": 438, "personality": 135, "quotactl": 179}

def outcome(fn):
    try:
        result = fn()
        return "ok" if result is None else "ok:" + str(result)[:200]
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))
    except Exception as error:
        return type(error).__name__

def syscall(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r

def read(path, size=200):
    with open(path, "rb") as f:
        return f.read(size)

def write(path, data):
    with open(path, "w") as f:
        f.write(data)

def connect(family, kind, proto, address):
    s = socket.socket(family, kind, proto)
    s.settimeout(2)
    started = time.time()
    try:
        s.connect(address)
    finally:
        s.close()

def handler(event, context):
    action = event["action"]
    if action == "syscalls":
        out = {name: outcome(lambda nr=nr: syscall(nr, 0, 0, 0, 0, 0)) for name, nr in NR.items()}
        out["unshare(CLONE_NEWUSER)"] = outcome(lambda: syscall(272, 0x10000000))
        out["clone(CLONE_NEWUSER)"] = outcome(lambda: syscall(56, 0x10000000 | 17, 0, 0, 0, 0))
        out["clone3"] = outcome(lambda: syscall(435, 0, 0))
        out["kill(-1)"] = outcome(lambda: os.kill(-1, 9))
        return out
    if action == "files":
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        return {
            "pids": pids,
            "/proc/1/root/etc/passwd": outcome(lambda: read("/proc/1/root/etc/passwd").decode()),
            "/proc/1/environ": outcome(lambda: read("/proc/1/environ")),
            "/proc/1/exe": outcome(lambda: os.open("/proc/1/exe", os.O_RDONLY)),
            "/proc/self/exe": os.readlink("/proc/self/exe"),
            "/sys": outcome(lambda: os.listdir("/sys")),
            "/sys/firmware": outcome(lambda: os.listdir("/sys/firmware")),
            "/proc/kcore": outcome(lambda: read("/proc/kcore")),
            "/proc/keys": outcome(lambda: read("/proc/keys")),
            "/proc/timer_list": outcome(lambda: read("/proc/timer_list")),
            "core_pattern": outcome(lambda: write("/proc/sys/kernel/core_pattern", "|/tmp/x")),
            "sysrq-trigger": outcome(lambda: write("/proc/sysrq-trigger", "b")),
            "/dev/mem": outcome(lambda: os.open("/dev/mem", os.O_RDONLY)),
            "/dev/fuse": outcome(lambda: os.open("/dev/fuse", os.O_RDWR)),
            "/dev/kmsg": outcome(lambda: os.open("/dev/kmsg", os.O_RDONLY)),
            "mknod /tmp/mem c 1 1": outcome(lambda: os.mknod("/tmp/mem", 0o600 | 0o020000, os.makedev(1, 1))),
            "cgroupfs": outcome(lambda: os.listdir("/sys/fs/cgroup")),
            "cwd": os.getcwd(),
            "fds": sorted(os.listdir("/proc/self/fd")),
        }
    if action == "terminal-and-sockets":
        return {
            "TIOCSTI": outcome(lambda: fcntl.ioctl(0, 0x5412, b"x")),
            "AF_ALG": outcome(lambda: socket.socket(38, socket.SOCK_SEQPACKET, 0)),
            "AF_VSOCK": outcome(lambda: socket.socket(40, socket.SOCK_STREAM, 0)),
            "AF_PACKET": outcome(lambda: socket.socket(17, socket.SOCK_RAW, 0)),
            "NETLINK_AUDIT": outcome(lambda: socket.socket(16, socket.SOCK_RAW, 9)),
            "NETLINK_ROUTE": outcome(lambda: socket.socket(16, socket.SOCK_RAW, 0).close()),
            "interfaces": sorted(name for _, name in socket.if_nameindex()),
        }
    if action == "egress":
        started = time.time()
        result = outcome(lambda: connect(socket.AF_INET, socket.SOCK_STREAM, 0, ("1.1.1.1", 80)))
        return {"connect 1.1.1.1:80": result, "seconds": time.time() - started,
                "dns": outcome(lambda: socket.getaddrinfo("example.com", 80))}
    if action == "listen":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", event["port"]))
        s.listen(5)
        s.settimeout(event["seconds"])
        try:
            s.accept()
            return {"accepted": True}
        except socket.timeout:
            return {"accepted": False}
    return {"unknown": action}
`,
};

let gateway: TestGateway;
let idle: number;
beforeAll(async () => {
  gateway = await startTestGateway('adversarial-syscalls');
  idle = await setUpWitness(gateway);
});
afterAll(() => gateway.stop());

async function probe(name: string, event: Record<string, unknown>): Promise<Record<string, unknown>> {
  return underAttack(gateway, idle, name, {
    deploy: async () => void expect((await deployFiles(gateway, name, PROBE)).status).toBe(201),
    run: async () => {
      const response = await invoke(gateway, name, JSON.stringify(event), { headers: { 'content-type': 'application/json' } });
      expect(response.status).toBe(200);
      return (await response.json()) as Record<string, unknown>;
    },
  });
}

describe('privileged syscalls are refused', () => {
  it('mount, unshare, setns, pivot_root, bpf, perf_event_open, userfaultfd, io_uring, keyctl, ptrace, reboot, … all EPERM; clone3 ENOSYS; kill(-1) harms nobody', async () => {
    const result = await probe('attack-syscalls', { action: 'syscalls' });
    const { clone3, 'kill(-1)': killAll, ...refused } = result;
    for (const [call, outcome] of Object.entries(refused)) expect(outcome, call).toBe('EPERM');
    expect(clone3).toBe('ENOSYS');
    // kill(-1) reaches only the caller's own PID namespace: nothing else there to kill.
    expect(killAll).toMatch(/^(ok|ESRCH)$/);
  });
});

describe('the host stays out of reach', () => {
  it('/proc shows only the sandbox, /sys is absent, kernel knobs are read-only, devices do not exist', async () => {
    const result = await probe('attack-files', { action: 'files' });
    expect((result.pids as string[]).length).toBeLessThanOrEqual(3);
    // /proc/1/root is the sandbox's own root: its passwd is the image's.
    expect(result['/proc/1/root/etc/passwd']).toMatch(/^(ok:.*sandbox:x:1000|EACCES)/s);
    expect(result['/proc/1/environ']).toBe('EACCES');
    expect(result['/proc/1/exe']).toBe('EACCES');
    expect(result['/proc/self/exe']).toMatch(/^\/usr\/bin\/python3/);
    expect(result['/sys']).toBe('ENOENT');
    expect(result['/sys/firmware']).toBe('ENOENT');
    expect(result['/proc/kcore']).toMatch(/^(ENOENT|ok:b'')$/);
    expect(result['/proc/keys']).toMatch(/^(ENOENT|ok:b'')$/);
    expect(result['/proc/timer_list']).toMatch(/^(ENOENT|ok:b'')$/);
    expect(result.core_pattern).toMatch(/^(EROFS|EACCES)$/);
    expect(result['sysrq-trigger']).toMatch(/^(EROFS|ENOENT|EACCES)$/);
    expect(result['/dev/mem']).toBe('ENOENT');
    expect(result['/dev/fuse']).toBe('ENOENT');
    expect(result['/dev/kmsg']).toBe('ENOENT');
    expect(result['mknod /tmp/mem c 1 1']).toBe('EPERM');
    expect(result.cgroupfs).toBe('ENOENT');
    expect(result.cwd).toBe('/code');
    // stdin, stdout, stderr, the channel, the gate, and the directory being listed: nothing of the host.
    expect(result.fds).toEqual(['0', '1', '2', '3', '4', '5']);
  });

  it('no TIOCSTI, no AF_ALG / AF_VSOCK / AF_PACKET / audit netlink sockets; only lo exists', async () => {
    const result = await probe('attack-sockets', { action: 'terminal-and-sockets' });
    expect(result).toMatchObject({
      TIOCSTI: 'EPERM', AF_ALG: 'EAFNOSUPPORT', AF_VSOCK: 'EAFNOSUPPORT', AF_PACKET: 'EAFNOSUPPORT', NETLINK_AUDIT: 'EAFNOSUPPORT',
      NETLINK_ROUTE: 'ok', interfaces: ['lo'],
    });
  });

  it('network egress fails at once: there is no route out', async () => {
    const result = await probe('attack-egress', { action: 'egress' });
    expect(result['connect 1.1.1.1:80']).toBe('ENETUNREACH');
    expect(result.seconds as number).toBeLessThan(0.5);
    expect(result.dns).not.toMatch(/^ok/);
  });

  it('a port the function listens on is not reachable from the host', async () => {
    const port = 40000 + (process.pid % 20000);
    const result = await underAttack(gateway, idle, 'attack-listen', {
      deploy: async () => void expect((await deployFiles(gateway, 'attack-listen', PROBE)).status).toBe(201),
      run: async () => {
        const call = invoke(gateway, 'attack-listen', JSON.stringify({ action: 'listen', port, seconds: 1.5 }), { headers: { 'content-type': 'application/json' } });
        await new Promise((resolve) => setTimeout(resolve, 500));
        const reached = await tryConnect(port);
        return { reached, answer: (await (await call).json()) as { accepted: boolean } };
      },
    });
    expect(result.reached).toBe('ECONNREFUSED');
    expect(result.answer).toEqual({ accepted: false });
  });
});

function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
  });
}
