import { describe, expect, it } from 'vitest';
import { compilePolicy, encodeProgram, evaluate, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO } from './bpf.js';
import { DEFAULT_POLICY, EAFNOSUPPORT, ENOSYS, EPERM, NAMESPACE_FLAGS, TIOCSTI } from './policy.js';

const AF_ALG = 38;
import { X86_64_SYSCALLS } from './syscalls-x86_64.js';

const program = compilePolicy(DEFAULT_POLICY);
const nr = (name: string): number => X86_64_SYSCALLS[name]!;
const call = (name: string, args: number[] = []): number => evaluate(program, { nr: nr(name), args });
const ERR = (errno: number): number => (SECCOMP_RET_ERRNO | errno) >>> 0;

// What Docker's default profile refuses to a process without capabilities (DESIGN.md §5, issue 6).
const DOCKER_REFUSED = [
  'mount', 'umount2', 'pivot_root', 'unshare', 'setns', 'bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup',
  'io_uring_enter', 'io_uring_register', 'keyctl', 'add_key', 'request_key', 'kexec_load', 'kexec_file_load',
  'init_module', 'finit_module', 'delete_module', 'open_by_handle_at', 'fsopen', 'fsconfig', 'fsmount', 'fspick',
  'move_mount', 'open_tree', 'kcmp', 'pidfd_getfd', 'process_vm_readv', 'process_vm_writev', 'ptrace', 'reboot',
  'swapon', 'swapoff', 'settimeofday', 'clock_settime', 'clock_adjtime', 'iopl', 'ioperm', 'acct', 'quotactl',
  'syslog', 'lookup_dcookie', 'vhangup', 'nfsservctl', 'uselib', 'ustat', 'sysfs', '_sysctl', 'personality',
];

describe('seccomp program', () => {
  it('allows the everyday calls', () => {
    for (const name of ['read', 'write', 'openat', 'mmap', 'futex', 'epoll_wait', 'execve', 'exit_group', 'getrandom', 'statx']) {
      expect(call(name), name).toBe(SECCOMP_RET_ALLOW);
    }
  });

  it('refuses every call Docker refuses, with EPERM', () => {
    for (const name of DOCKER_REFUSED) expect(call(name), name).toBe(ERR(EPERM));
  });

  it('clone: threads and processes yes, any namespace flag no; clone3 is ENOSYS', () => {
    const THREAD = 0x3d0f00; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    expect(call('clone', [THREAD])).toBe(SECCOMP_RET_ALLOW);
    expect(call('clone', [0x11 /* SIGCHLD */])).toBe(SECCOMP_RET_ALLOW);
    for (let bit = 0; bit < 32; bit++) {
      const flag = (1 << bit) >>> 0;
      if (NAMESPACE_FLAGS & flag) expect(call('clone', [0x11 | flag]), `flag ${flag.toString(16)}`).toBe(ERR(EPERM));
    }
    expect(call('clone3')).toBe(ERR(ENOSYS));
  });

  it('socket: unix, inet, inet6 and NETLINK_ROUTE only', () => {
    expect(call('socket', [1, 1, 0])).toBe(SECCOMP_RET_ALLOW);
    expect(call('socket', [2, 1, 0])).toBe(SECCOMP_RET_ALLOW);
    expect(call('socket', [10, 2, 0])).toBe(SECCOMP_RET_ALLOW);
    expect(call('socket', [16, 3, 0])).toBe(SECCOMP_RET_ALLOW);
    expect(call('socket', [16, 3, 9 /* NETLINK_AUDIT */])).toBe(ERR(EAFNOSUPPORT));
    expect(call('socket', [AF_ALG, 5, 0])).toBe(ERR(EAFNOSUPPORT));
    expect(call('socket', [40 /* AF_VSOCK */, 1, 0])).toBe(ERR(EAFNOSUPPORT));
    expect(call('socket', [17 /* AF_PACKET */, 3, 0])).toBe(ERR(EAFNOSUPPORT));
  });

  it('ioctl: everything but TIOCSTI and TIOCLINUX', () => {
    expect(call('ioctl', [0, 0x541b /* FIONREAD */])).toBe(SECCOMP_RET_ALLOW);
    expect(call('ioctl', [0, TIOCSTI])).toBe(ERR(EPERM));
    expect(call('ioctl', [0, 0x541c])).toBe(ERR(EPERM));
  });

  it('refuses foreign ABIs: i386 by arch, x32 by the syscall bit; unknown new calls are ENOSYS', () => {
    expect(evaluate(program, { nr: 3, arch: 0x40000003 /* AUDIT_ARCH_I386 */ })).toBe(ERR(ENOSYS));
    expect(evaluate(program, { nr: 0x40000000 + nr('read') })).toBe(ERR(ENOSYS));
    expect(evaluate(program, { nr: 999 })).toBe(ERR(ENOSYS));
  });

  it('agrees with the policy table on every x86_64 syscall number', () => {
    const allowed = new Set(Object.values(DEFAULT_POLICY.allow).flat());
    for (const [name, number] of Object.entries(X86_64_SYSCALLS)) {
      const result = evaluate(program, { nr: number, args: [0x11, 0, 0] });
      if (allowed.has(name)) expect(result, name).toBe(SECCOMP_RET_ALLOW);
      else if (!(name in DEFAULT_POLICY.conditional) && !DEFAULT_POLICY.enosys.includes(name)) expect(result, name).toBe(ERR(EPERM));
    }
    // numbers in the gaps of the table are refused too
    for (const gap of [335, 387, 400, 423]) expect(evaluate(program, { nr: gap }), String(gap)).toBe(ERR(EPERM));
  });

  it('is a search tree: small to load, a few comparisons per call', () => {
    expect(program.length).toBeLessThan(256);
    expect(encodeProgram(program).length).toBe(program.length * 8);
    expect(encodeProgram(program).length).toBe(program.length * 8);
  });
});
