// The seccomp policy of every sandbox, as one table: an allowlist, default
// EPERM. It starts from Docker's default profile for a process without
// capabilities and is stricter where a function has no business (no
// chroot, no personality, no ptrace, no process_vm_*). bpf.ts compiles it.

export interface ArgumentRule {
  /** Which syscall argument (0-5), compared on its low 32 bits. */
  arg: number;
}

/** Calls allowed only with some argument values. */
export type ConditionalRule =
  | (ArgumentRule & { kind: 'maskedZero'; mask: number; errno: number; why: string })
  | (ArgumentRule & { kind: 'oneOf'; values: number[]; errno: number; why: string; then?: { value: number; arg: number; values: number[] } })
  | (ArgumentRule & { kind: 'noneOf'; values: number[]; errno: number; why: string });

export interface SeccompPolicy {
  /** Returned for everything not allowed. */
  defaultErrno: number;
  /** Calls allowed whatever their arguments, grouped only for the reader. */
  allow: Record<string, string[]>;
  conditional: Record<string, ConditionalRule>;
  /** Calls that answer ENOSYS, so libraries fall back to an older call. */
  enosys: string[];
  /** Refused explicitly (they are refused by default anyway): documentation and tests. */
  refused: Record<string, string[]>;
}

export const EPERM = 1;
export const ENOSYS = 38;
export const EAFNOSUPPORT = 97;

const CLONE_NEWTIME = 0x80;
const CLONE_NEWNS = 0x20000;
const CLONE_NEWCGROUP = 0x02000000;
const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;
export const NAMESPACE_FLAGS = CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const NETLINK_ROUTE = 0;
export const TIOCSTI = 0x5412;
export const TIOCLINUX = 0x541c;

export const DEFAULT_POLICY: SeccompPolicy = {
  defaultErrno: EPERM,
  allow: {
    // Hot paths first: the filter is a linear list and these are checked earliest.
    'I/O and polling': [
      'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'pwritev', 'preadv2', 'pwritev2',
      'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'epoll_ctl', 'epoll_create', 'epoll_create1', 'poll', 'ppoll',
      'select', 'pselect6', 'futex', 'futex_waitv', 'futex_wake', 'futex_wait', 'futex_requeue', 'close', 'close_range',
      'eventfd', 'eventfd2', 'pipe', 'pipe2', 'splice', 'tee', 'vmsplice', 'sendfile', 'copy_file_range',
    ],
    'memory': [
      'mmap', 'munmap', 'mprotect', 'mremap', 'madvise', 'brk', 'msync', 'mincore', 'mlock', 'mlock2', 'munlock',
      'mlockall', 'munlockall', 'membarrier', 'memfd_create', 'remap_file_pages', 'get_mempolicy',
      'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'map_shadow_stack', 'mseal',
    ],
    'files, inside the sandbox root': [
      'open', 'openat', 'openat2', 'creat', 'stat', 'fstat', 'lstat', 'newfstatat', 'statx', 'statfs', 'fstatfs',
      'access', 'faccessat', 'faccessat2', 'lseek', 'getdents', 'getdents64', 'readlink', 'readlinkat', 'getcwd',
      'chdir', 'fchdir', 'mkdir', 'mkdirat', 'rmdir', 'rename', 'renameat', 'renameat2', 'link', 'linkat', 'unlink',
      'unlinkat', 'symlink', 'symlinkat', 'chmod', 'fchmod', 'fchmodat', 'fchmodat2', 'chown', 'fchown', 'lchown',
      'fchownat', 'truncate', 'ftruncate', 'fallocate', 'fadvise64', 'readahead', 'fsync', 'fdatasync', 'sync',
      'syncfs', 'sync_file_range', 'flock', 'fcntl', 'dup', 'dup2', 'dup3', 'umask', 'utime', 'utimes', 'utimensat',
      'futimesat', 'mknod', 'mknodat', 'name_to_handle_at', 'inotify_init', 'inotify_init1', 'inotify_add_watch',
      'inotify_rm_watch', 'getxattr', 'lgetxattr', 'fgetxattr', 'listxattr', 'llistxattr', 'flistxattr',
      'setxattr', 'lsetxattr', 'fsetxattr', 'removexattr', 'lremovexattr', 'fremovexattr', 'cachestat',
      'getxattrat', 'setxattrat', 'listxattrat', 'removexattrat',
    ],
    'asynchronous I/O (not io_uring)': ['io_setup', 'io_destroy', 'io_submit', 'io_cancel', 'io_getevents', 'io_pgetevents'],
    'processes and threads (clone is conditional)': [
      'fork', 'vfork', 'execve', 'execveat', 'exit', 'exit_group', 'wait4', 'waitid', 'kill', 'tkill', 'tgkill',
      'set_tid_address', 'set_robust_list', 'get_robust_list', 'rseq', 'arch_prctl', 'prctl', 'getpid', 'getppid',
      'gettid', 'getpgid', 'setpgid', 'getpgrp', 'getsid', 'setsid', 'getpriority', 'setpriority', 'pidfd_open',
      'pidfd_send_signal', 'sched_yield', 'sched_getaffinity', 'sched_setaffinity', 'sched_getparam',
      'sched_setparam', 'sched_getscheduler', 'sched_setscheduler', 'sched_get_priority_max',
      'sched_get_priority_min', 'sched_rr_get_interval', 'sched_getattr', 'sched_setattr', 'getcpu',
      'ioprio_get', 'ioprio_set', 'getrlimit', 'setrlimit', 'prlimit64', 'getrusage', 'times',
      'seccomp', 'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self',
    ],
    'credentials (within the sandbox user namespace, no capabilities)': [
      'getuid', 'geteuid', 'getgid', 'getegid', 'getresuid', 'getresgid', 'getgroups', 'setuid', 'setgid',
      'setreuid', 'setregid', 'setresuid', 'setresgid', 'setgroups', 'setfsuid', 'setfsgid', 'capget', 'capset',
    ],
    'signals and timers': [
      'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigpending', 'rt_sigsuspend', 'rt_sigtimedwait',
      'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'sigaltstack', 'signalfd', 'signalfd4', 'pause', 'restart_syscall',
      'alarm', 'getitimer', 'setitimer', 'nanosleep', 'clock_nanosleep', 'clock_gettime', 'clock_getres',
      'gettimeofday', 'time', 'timer_create', 'timer_settime', 'timer_gettime', 'timer_getoverrun', 'timer_delete',
      'timerfd_create', 'timerfd_settime', 'timerfd_gettime',
    ],
    'sockets (socket itself is conditional)': [
      'socketpair', 'bind', 'listen', 'accept', 'accept4', 'connect', 'getsockname', 'getpeername', 'sendto',
      'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg', 'shutdown', 'setsockopt', 'getsockopt',
    ],
    'System V and POSIX IPC (the sandbox has its own IPC namespace)': [
      'shmget', 'shmat', 'shmdt', 'shmctl', 'semget', 'semop', 'semtimedop', 'semctl', 'msgget', 'msgsnd', 'msgrcv',
      'msgctl', 'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedreceive', 'mq_notify', 'mq_getsetattr',
    ],
    'system information': ['uname', 'sysinfo', 'getrandom'],
  },
  conditional: {
    clone: {
      kind: 'maskedZero', arg: 0, mask: NAMESPACE_FLAGS, errno: EPERM,
      why: 'threads and processes yes; new namespaces (a nested user namespace above all) no',
    },
    socket: {
      kind: 'oneOf', arg: 0, values: [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK], errno: EAFNOSUPPORT,
      why: 'unix and IP sockets (the network namespace has only lo); netlink only for NETLINK_ROUTE (getifaddrs); no AF_ALG, AF_VSOCK, AF_PACKET, …',
      then: { value: AF_NETLINK, arg: 2, values: [NETLINK_ROUTE] },
    },
    ioctl: {
      kind: 'noneOf', arg: 1, values: [TIOCSTI, TIOCLINUX], errno: EPERM,
      why: 'no pushing input into a terminal (TIOCSTI, TIOCLINUX)',
    },
  },
  // clone3 passes its flags in memory the filter cannot read: answer ENOSYS and
  // libc falls back to clone, whose flags it can.
  enosys: ['clone3'],
  refused: {
    'mounts and namespaces': ['mount', 'umount2', 'pivot_root', 'chroot', 'unshare', 'setns', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'open_tree_attr', 'mount_setattr', 'statmount', 'listmount'],
    'kernel attack surface': ['bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'keyctl', 'add_key', 'request_key'],
    'other processes': ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd', 'process_madvise', 'process_mrelease'],
    'the machine': ['reboot', 'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'syslog', 'iopl', 'ioperm', 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex', 'sethostname', 'setdomainname', 'vhangup', 'lookup_dcookie', 'nfsservctl', 'personality', 'uselib', 'ustat', 'sysfs', '_sysctl', 'open_by_handle_at', 'fanotify_init', 'fanotify_mark', 'migrate_pages', 'move_pages', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node', 'memfd_secret'],
  },
};
