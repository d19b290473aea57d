/*
 * fnbox-launcher: boots one sandbox and stays beside it as its monitor.
 *
 * Two ways to run it:
 *   fnbox-launcher [OPTIONS] -- PROGRAM ARGS...   one sandbox, events on stderr
 *   fnbox-launcher --park [OPTIONS]               a sandbox booted ahead: all of
 *       it up to the program's execve, which waits for a "start HOSTNAME N"
 *       command carrying the program (--chdir, --setenv, -- ARGV)
 *   fnbox-launcher --server                       a zygote: reads length-prefixed
 *       argument lists on stdin and forks one monitor per list, so the gateway
 *       pays a fork (~0.1 ms) per sandbox instead of a Node spawn (~2 ms).
 *       Monitors then connect to the gateway's unix socket (--connect) for
 *       their control stream, the program's channel and its logs.
 *
 * This is the only fnbox code that makes privileged syscalls. It decides
 * nothing: every mount, id map, limit and the seccomp program arrive as
 * arguments from the TypeScript side (src/sandbox/spec.ts), which owns the
 * policy. The file reads top to bottom in the order things happen:
 *
 *   monitor (host namespaces, host root)
 *     1. parse arguments into one plain struct            (parse_args)
 *     2. tie our life to the gateway, drop host groups
 *     3. build the root layer: tmpfs + overlay, detached  (make_root_layer)
 *     4. make the sandbox's cgroups as listed (make_cgroups); clone3 into new
 *        user/pid/mnt/net/ipc/uts namespaces (and the v2 cgroup)
 *     5. write uid/gid maps, release the child
 *     6. with --park: report "parked", wait for "start", set the hostname
 *        and hand the program its arguments (await_claim);
 *        report "started", then serve reset (and adopt, sync) commands until
 *        the child exits; each swap is announced on the program's gate
 *   child = PID 1 of the sandbox (sandbox_init)
 *     7. join the v1 cgroups (join_cgroup1); unshare the cgroup namespace
 *     8. attach the root layer (still host uid 0 for path access)
 *     9. become root of the user namespace (an unprivileged host uid);
 *        /proc, /dev, masks; pivot_root; old root gone
 *    10. fork the program, reap zombies, exit with the program
 *   program (exec_program)
 *    11. new session, arrange fds, rlimits, drop every capability, set ids,
 *        no_new_privs, seccomp; with --park, wait for the start here;
 *        chdir, execve
 *
 * Every step is checked; a failure writes one JSON line naming the step and
 * errno to the status fd and exits with the code of its phase (see enum).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The new mount API and clone3 are older than the glibc wrappers for them;
 * define what an older libc may lack (numbers are the same on every arch
 * since 5.x uses the unified syscall table for these). */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef MOUNT_ATTR_NOSUID
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#endif
#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* Exit codes, one per phase; src/sandbox/launcher-protocol.ts maps them. */
enum {
  EXIT_ARGS = 110,    /* bad arguments: a bug on the TypeScript side */
  EXIT_LAYER = 111,   /* tmpfs/overlay for the root could not be built */
  EXIT_CLONE = 112,   /* clone3 into the namespaces failed */
  EXIT_IDMAP = 113,   /* uid/gid maps or v1 cgroup attach failed */
  EXIT_MOUNT = 114,   /* filesystem setup inside the sandbox failed */
  EXIT_PRIVS = 115,   /* dropping privileges failed */
  EXIT_EXEC = 116,    /* execve of the program failed */
  EXIT_INIT = 117,    /* the sandbox init failed to fork or wait */
};

#define MAX_LIST 64

struct id_map { unsigned inside, outside, count; };
struct rlimit_rule { int resource; struct rlimit value; };
struct fd_pass { int host_fd, child_fd; };

/* Everything the launcher will do, checked before anything is done. */
struct config {
  int status_fd;              /* JSON lines out: started, error, reset, exit */
  int control_fd;             /* commands in: "reset\n", "adopt HOST PATH\n" */
  const char *connect_path;   /* the gateway's unix socket */
  const char *id;             /* names our connections to the gateway */
  int channel_fd;             /* the program's fd for its channel, 0 = none */
  int gate_fd;                /* the program's fd where each swap is announced, 0 = none */
  int capture_logs;           /* program's stdout/stderr to the gateway */
  const char *lowers[MAX_LIST]; int n_lowers;   /* topmost first */
  int lower_fds[MAX_LIST];                      /* the same, opened once (O_PATH) */
  unsigned long long upper_size;                /* bytes of the per-call tmpfs */
  unsigned long long upper_inodes;
  unsigned long long small_layer_bytes;         /* an old layer this small is dropped after the swap is announced */
  const char *root_mountpoint;  /* empty dir where the new root is attached */
  const char *scratch_dir;      /* empty dir for layer tmpfs mounts on older kernels */
  const char *dev_nodes[MAX_LIST]; int n_dev_nodes;
  const char *masks[MAX_LIST]; int n_masks;       /* hidden paths */
  const char *readonly[MAX_LIST]; int n_readonly; /* read-only remounts */
  const char *sysctls[16]; int n_sysctls;         /* KEY=VALUE under /proc/sys, namespaced ones */
  const char *hostname;
  int loopback_up;              /* bring lo up in the sandbox's network namespace */
  struct id_map uid_maps[8]; int n_uid_maps;
  struct id_map gid_maps[8]; int n_gid_maps;
  const char *cgroup_mkdirs[8]; int n_cgroup_mkdirs;  /* made before the clone, in order */
  const char *cgroup_writes[32]; int n_cgroup_writes; /* FILE, VALUE pairs, written after them */
  const char *cgroup2;                            /* CLONE_INTO_CGROUP target */
  const char *cgroup1[MAX_LIST]; int n_cgroup1;   /* joined by the child, first thing */
  int cgroup1_fds[MAX_LIST];                      /* their `tasks` files, opened by the monitor */
  uid_t uid; gid_t gid;                           /* the program's identity */
  const char *cwd;
  char *env[MAX_LIST + 1]; int n_env;
  struct rlimit_rule rlimits[16]; int n_rlimits;
  struct fd_pass passes[8]; int n_passes;
  const char *seccomp_file;   /* BPF program, struct sock_filter[] */
  int seccomp_fd;
  char **argv;
  int park;                   /* boot ahead: the program waits for "start" */
};

static struct config cfg = { .status_fd = 2, .control_fd = -1, .seccomp_fd = -1 };
/* Our own command line as /proc/PID/cmdline shows it (set in main). */
static char *cmdline_area;
static size_t cmdline_size;

/* Names the process for ps and /proc: "fnbox-init" inside a sandbox reveals
 * nothing of the host (not even where the launcher lives). */
static void set_process_name(const char *comm, const char *cmdline) {
  prctl(PR_SET_NAME, comm, 0, 0, 0);
  if (!cmdline_area || cmdline_size == 0) return;
  memset(cmdline_area, 0, cmdline_size);
  strncpy(cmdline_area, cmdline, cmdline_size - 1);
}
static const char *current_step = "start";

/* ---------- reporting ---------- */

static void emit(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0 || cfg.status_fd < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  /* Lines written before the control connection exists go to the zygote's
   * stderr, shared by all monitors: name the sandbox they belong to. */
  char prefix[160] = "";
  if (cfg.id && cfg.status_fd == 2 && line[0] == '{')
    snprintf(prefix, sizeof prefix, "{\"id\":\"%.100s\",", cfg.id);
  struct iovec parts[2] = {
    { prefix, strlen(prefix) },
    { prefix[0] ? line + 1 : line, (size_t)(prefix[0] ? n - 1 : n) },
  };
  /* One write per line: the pipe keeps lines under PIPE_BUF whole. */
  (void)!writev(cfg.status_fd, parts, 2);
}

/* Never returns: names the step, the errno and exits with the phase code. */
__attribute__((noreturn, format(printf, 2, 3)))
static void die(int phase, const char *fmt, ...) {
  int saved = errno;
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  for (char *p = detail; *p; p++) if (*p == '"' || *p == '\\' || *p < 0x20) *p = '\'';
  emit("{\"event\":\"error\",\"phase\":%d,\"step\":\"%s\",\"errno\":%d,\"message\":\"%s: %s\"}",
       phase, current_step, saved, detail, saved ? strerror(saved) : "invalid");
  _exit(phase);
}

#define STEP(name) (current_step = (name))

static int read_full(int fd, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, (char *)buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

/* To a socket whose reader may be gone: an error, not a SIGPIPE. */
static int send_full(int fd, const void *buf, size_t len) {
  size_t sent = 0;
  while (sent < len) {
    ssize_t n = send(fd, (const char *)buf + sent, len - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    sent += (size_t)n;
  }
  return 0;
}

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------- 1. arguments ---------- */

static unsigned long long parse_num(const char *opt, const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || end == s) { errno = EINVAL; die(EXIT_ARGS, "%s wants a number, got %s", opt, s); }
  return v;
}

static struct id_map parse_id_map(const char *opt, const char *s) {
  struct id_map m;
  if (sscanf(s, "%u:%u:%u", &m.inside, &m.outside, &m.count) != 3 || m.count == 0) {
    errno = EINVAL; die(EXIT_ARGS, "%s wants INSIDE:OUTSIDE:COUNT, got %s", opt, s);
  }
  return m;
}

static int rlimit_by_name(const char *name) {
  static const struct { const char *name; int resource; } names[] = {
    {"core", RLIMIT_CORE}, {"nofile", RLIMIT_NOFILE}, {"fsize", RLIMIT_FSIZE},
    {"nproc", RLIMIT_NPROC}, {"stack", RLIMIT_STACK}, {"memlock", RLIMIT_MEMLOCK},
    {"as", RLIMIT_AS}, {"cpu", RLIMIT_CPU}, {"msgqueue", RLIMIT_MSGQUEUE},
    {"sigpending", RLIMIT_SIGPENDING}, {"locks", RLIMIT_LOCKS},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(names[i].name, name) == 0) return names[i].resource;
  return -1;
}

static void parse_args(int argc, char **argv) {
  STEP("parse_args");
#define NEXT() (i + 1 < argc ? argv[++i] : (errno = EINVAL, die(EXIT_ARGS, "%s needs a value", a), (char *)0))
#define PUSH(list, n, v) do { if ((n) >= (int)(sizeof(list) / sizeof((list)[0])) - 0) { errno = E2BIG; die(EXIT_ARGS, "too many %s", a); } (list)[(n)++] = (v); } while (0)
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) { i++; break; }
    else if (strcmp(a, "--connect") == 0) cfg.connect_path = NEXT();
    else if (strcmp(a, "--id") == 0) cfg.id = NEXT();
    else if (strcmp(a, "--channel-fd") == 0) cfg.channel_fd = (int)parse_num(a, NEXT());
    else if (strcmp(a, "--gate-fd") == 0) cfg.gate_fd = (int)parse_num(a, NEXT());
    else if (strcmp(a, "--capture-logs") == 0) cfg.capture_logs = 1;
    else if (strcmp(a, "--park") == 0) cfg.park = 1;
    else if (strcmp(a, "--lower") == 0) PUSH(cfg.lowers, cfg.n_lowers, NEXT());
    else if (strcmp(a, "--upper-size") == 0) cfg.upper_size = parse_num(a, NEXT());
    else if (strcmp(a, "--upper-inodes") == 0) cfg.upper_inodes = parse_num(a, NEXT());
    else if (strcmp(a, "--small-layer-bytes") == 0) cfg.small_layer_bytes = parse_num(a, NEXT());
    else if (strcmp(a, "--root-mountpoint") == 0) cfg.root_mountpoint = NEXT();
    else if (strcmp(a, "--scratch-dir") == 0) cfg.scratch_dir = NEXT();
    else if (strcmp(a, "--dev-node") == 0) PUSH(cfg.dev_nodes, cfg.n_dev_nodes, NEXT());
    else if (strcmp(a, "--mask") == 0) PUSH(cfg.masks, cfg.n_masks, NEXT());
    else if (strcmp(a, "--readonly") == 0) PUSH(cfg.readonly, cfg.n_readonly, NEXT());
    else if (strcmp(a, "--sysctl") == 0) {
      const char *v = NEXT();
      if (!strchr(v, '=') || strstr(v, "..") || v[0] == '/') { errno = EINVAL; die(EXIT_ARGS, "--sysctl wants path/under/proc/sys=VALUE, got %s", v); }
      PUSH(cfg.sysctls, cfg.n_sysctls, v);
    }
    else if (strcmp(a, "--hostname") == 0) cfg.hostname = NEXT();
    else if (strcmp(a, "--loopback-up") == 0) cfg.loopback_up = 1;
    else if (strcmp(a, "--uid-map") == 0) PUSH(cfg.uid_maps, cfg.n_uid_maps, parse_id_map(a, NEXT()));
    else if (strcmp(a, "--gid-map") == 0) PUSH(cfg.gid_maps, cfg.n_gid_maps, parse_id_map(a, NEXT()));
    else if (strcmp(a, "--cgroup-mkdir") == 0) PUSH(cfg.cgroup_mkdirs, cfg.n_cgroup_mkdirs, NEXT());
    else if (strcmp(a, "--cgroup-write") == 0) {
      PUSH(cfg.cgroup_writes, cfg.n_cgroup_writes, NEXT());
      PUSH(cfg.cgroup_writes, cfg.n_cgroup_writes, NEXT());
    }
    else if (strcmp(a, "--cgroup2") == 0) cfg.cgroup2 = NEXT();
    else if (strcmp(a, "--cgroup1") == 0) PUSH(cfg.cgroup1, cfg.n_cgroup1, NEXT());
    else if (strcmp(a, "--uid") == 0) cfg.uid = (uid_t)parse_num(a, NEXT());
    else if (strcmp(a, "--gid") == 0) cfg.gid = (gid_t)parse_num(a, NEXT());
    else if (strcmp(a, "--chdir") == 0) cfg.cwd = NEXT();
    else if (strcmp(a, "--setenv") == 0) PUSH(cfg.env, cfg.n_env, NEXT());
    else if (strcmp(a, "--seccomp-file") == 0) cfg.seccomp_file = NEXT();
    else if (strcmp(a, "--rlimit") == 0) {
      /* NAME=SOFT:HARD */
      char name[32]; unsigned long long soft, hard;
      const char *v = NEXT();
      if (sscanf(v, "%31[a-z]=%llu:%llu", name, &soft, &hard) != 3 || rlimit_by_name(name) < 0) {
        errno = EINVAL; die(EXIT_ARGS, "--rlimit wants NAME=SOFT:HARD, got %s", v);
      }
      struct rlimit_rule r = { rlimit_by_name(name), { soft, hard } };
      PUSH(cfg.rlimits, cfg.n_rlimits, r);
    } else { errno = EINVAL; die(EXIT_ARGS, "unknown option %s", a); }
  }
  cfg.env[cfg.n_env] = NULL;
  cfg.argv = argv + i;
  errno = EINVAL;
  if (i >= argc && !cfg.park) die(EXIT_ARGS, "no program given after --");
  if (cfg.n_lowers == 0) die(EXIT_ARGS, "at least one --lower is required");
  if (!cfg.root_mountpoint) die(EXIT_ARGS, "--root-mountpoint is required");
  if (!cfg.scratch_dir) die(EXIT_ARGS, "--scratch-dir is required");
  if (cfg.n_uid_maps == 0 || cfg.n_gid_maps == 0) die(EXIT_ARGS, "--uid-map and --gid-map are required");
  if (cfg.upper_size == 0) die(EXIT_ARGS, "--upper-size is required");
  if (!cfg.cwd) cfg.cwd = "/";
  if ((cfg.channel_fd || cfg.capture_logs) && !cfg.connect_path) die(EXIT_ARGS, "--channel-fd and --capture-logs need --connect");
  if (cfg.connect_path && !cfg.id) die(EXIT_ARGS, "--connect needs --id");
  if (cfg.park && !cfg.connect_path) die(EXIT_ARGS, "--park needs --connect: the start comes on the control stream");
  if (cfg.channel_fd && (cfg.channel_fd < 3 || cfg.channel_fd >= 64)) die(EXIT_ARGS, "--channel-fd must be 3..63");
  if (cfg.gate_fd && (!cfg.channel_fd || cfg.gate_fd == cfg.channel_fd || cfg.gate_fd < 3 || cfg.gate_fd >= 64))
    die(EXIT_ARGS, "--gate-fd must be 3..63, other than --channel-fd, which it needs");
  errno = 0;
#undef NEXT
#undef PUSH
}

/* ---------- 3. the root layer ---------- */

/* A root layer is a tmpfs (holding upper/ and work/) and an overlay of the
 * read-only lowers under that upper, both detached: nothing appears in the
 * host's mount table, so host mount namespace copies stay cheap and the
 * layer vanishes with its last reference even if every fnbox process is
 * SIGKILLed. proc_fd and dev_fd: copies of the sandbox's /proc and /dev
 * for a layer that will replace its root (see clone_proc_and_dev). */
struct layer { int tmpfs_fd; int root_fd; int proc_fd; int dev_fd; char holder[PATH_MAX]; };

/* Before Linux 6.11 (or so) overlay refuses an upper on a detached mount
 * ("failed to clone upperpath"). There the tmpfs is attached instead, in a
 * mount namespace private to the monitor, so the host's table still shows
 * nothing. -1: not probed yet. */
static int attach_uppers = -1;
static unsigned layer_generation;

/* Can an overlay use an upper on a detached tmpfs? Asked once, of the kernel. */
static int detached_upper_works(void) {
  int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC), tmp = -1, ok = 0;
  if (fs < 0 || syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) goto out;
  tmp = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
  if (tmp < 0 || mkdirat(tmp, "upper", 0755) < 0 || mkdirat(tmp, "work", 0700) < 0) goto out;
  close(fs);
  fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
  char upper[64], work[64];
  snprintf(upper, sizeof upper, "/proc/self/fd/%d/upper", tmp);
  snprintf(work, sizeof work, "/proc/self/fd/%d/work", tmp);
  ok = fs >= 0 && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir", "/", 0) == 0 &&
       syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) == 0 &&
       syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", work, 0) == 0 &&
       syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0;
out:
  if (fs >= 0) close(fs);
  if (tmp >= 0) close(tmp);
  return ok;
}

/* Older kernels: a mount namespace of the monitor's own, with a small tmpfs
 * on the scratch dir to hold each layer's tmpfs. */
static void enter_private_mount_namespace(void) {
  STEP("private_mount_namespace");
  if (unshare(CLONE_NEWNS) < 0) die(EXIT_LAYER, "unshare mount namespace");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die(EXIT_LAYER, "make / private");
  if (mount("tmpfs", cfg.scratch_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0700") < 0)
    die(EXIT_LAYER, "mount tmpfs on %s", cfg.scratch_dir);
}

static void fs_set(int fs, const char *key, const char *value) {
  if (syscall(SYS_fsconfig, fs, value ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key, value, 0) < 0)
    die(EXIT_LAYER, "fsconfig %s=%s", key, value ? value : "(flag)");
}

static int make_root_layer(struct layer *out, int phase) {
  char buf[PATH_MAX * 2];
  (void)phase;
  STEP("tmpfs");
  int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
  if (fs < 0) die(EXIT_LAYER, "fsopen tmpfs");
  snprintf(buf, sizeof buf, "%llu", cfg.upper_size);
  fs_set(fs, "size", buf);
  if (cfg.upper_inodes) { snprintf(buf, sizeof buf, "%llu", cfg.upper_inodes); fs_set(fs, "nr_inodes", buf); }
  fs_set(fs, "mode", "0755");
  if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) die(EXIT_LAYER, "create tmpfs");
  out->tmpfs_fd = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (out->tmpfs_fd < 0) die(EXIT_LAYER, "fsmount tmpfs");
  close(fs);
  if (mkdirat(out->tmpfs_fd, "upper", 0755) < 0) die(EXIT_LAYER, "mkdir upper");
  if (mkdirat(out->tmpfs_fd, "work", 0700) < 0) die(EXIT_LAYER, "mkdir work");
  out->holder[0] = 0;
  out->proc_fd = out->dev_fd = -1;
  if (attach_uppers == 1) {
    STEP("attach_upper");
    snprintf(out->holder, sizeof out->holder, "%s/%u", cfg.scratch_dir, layer_generation++);
    if (mkdir(out->holder, 0700) < 0) die(EXIT_LAYER, "mkdir %s", out->holder);
    if (syscall(SYS_move_mount, out->tmpfs_fd, "", AT_FDCWD, out->holder, MOVE_MOUNT_F_EMPTY_PATH) < 0)
      die(EXIT_LAYER, "attach tmpfs at %s", out->holder);
  }

  STEP("overlay");
  fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
  if (fs < 0) die(EXIT_LAYER, "fsopen overlay");
  /* Layers by fd: fsconfig takes at most 256 bytes per value, and the
   * sandbox's mountinfo then shows /proc/self/fd/N, not host paths. */
  size_t used = 0;
  for (int i = 0; i < cfg.n_lowers; i++) {
    int n = snprintf(buf + used, sizeof buf - used, "%s/proc/self/fd/%d", i ? ":" : "", cfg.lower_fds[i]);
    if (n < 0 || (size_t)n >= sizeof buf - used) { errno = ENAMETOOLONG; die(EXIT_LAYER, "lowerdir list"); }
    used += (size_t)n;
  }
  fs_set(fs, "lowerdir", buf);
  /* The upper lives on the detached tmpfs; /proc/self/fd reaches it. */
  snprintf(buf, sizeof buf, "/proc/self/fd/%d/upper", out->tmpfs_fd);
  fs_set(fs, "upperdir", buf);
  snprintf(buf, sizeof buf, "/proc/self/fd/%d/work", out->tmpfs_fd);
  fs_set(fs, "workdir", buf);
  /* tmpfs has nothing to sync; an index or redirects buy nothing here. */
  fs_set(fs, "volatile", NULL);
  if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) die(EXIT_LAYER, "create overlay");
  out->root_fd = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (out->root_fd < 0) die(EXIT_LAYER, "fsmount overlay");
  close(fs);
  return 0;
}

/* ---------- network namespaces ---------- */

/* A network namespace made ahead of time by the zygote (lo already up), or
 * -1: the child then gets a fresh one from clone3 and brings lo up itself.
 * Creating one costs ~0.6 ms, most of a boot; the zygote does it when idle. */
static int pooled_netns = -1;

/* Write end of a pipe from the zygote, held until this monitor's program
 * has started: the zygote makes network namespaces only while no monitor
 * holds one, so that work never holds a boot's setup off the CPU. */
static int booting_fd = -1;

/* lo up: what a function on localhost expects (docker and bwrap do the same). */
static int bring_loopback_up(void) {
  struct ifreq ifr;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    rc = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  close(s);
  return rc;
}

/* ---------- 8. filesystem inside the sandbox ---------- */

static void path_join(char *out, size_t size, const char *a, const char *b) {
  if ((size_t)snprintf(out, size, "%s%s", a, b) >= size) { errno = ENAMETOOLONG; die(EXIT_MOUNT, "path %s%s", a, b); }
}

/* /dev is a small tmpfs with the host's harmless device nodes bind-mounted
 * in: a user namespace cannot mknod, and a devtmpfs would show everything. */
static void setup_dev(const char *root) {
  char dev[PATH_MAX], target[PATH_MAX], source[PATH_MAX];
  STEP("mount_dev");
  path_join(dev, sizeof dev, root, "/dev");
  if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64") < 0)
    die(EXIT_MOUNT, "mount tmpfs on %s", dev);
  for (int i = 0; i < cfg.n_dev_nodes; i++) {
    STEP("bind_dev_node");
    path_join(target, sizeof target, dev, "/");
    strncat(target, cfg.dev_nodes[i], sizeof target - strlen(target) - 1);
    path_join(source, sizeof source, "/dev/", cfg.dev_nodes[i]);
    int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) die(EXIT_MOUNT, "create %s", target);
    close(fd);
    if (mount(source, target, NULL, MS_BIND, NULL) < 0) die(EXIT_MOUNT, "bind %s", source);
  }
  STEP("dev_links");
  static const char *links[][2] = {
    {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
    {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
  };
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    path_join(target, sizeof target, dev, "/");
    strncat(target, links[i][1], sizeof target - strlen(target) - 1);
    if (symlink(links[i][0], target) < 0) die(EXIT_MOUNT, "symlink %s", target);
  }
  /* Sealed: nothing can be added to /dev later. */
  if (mount(NULL, dev, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "mode=0755") < 0)
    die(EXIT_MOUNT, "remount %s read-only", dev);
}

/* Mask with an empty read-only tmpfs (directories) or /dev/null (files),
 * as runc does for /proc/kcore and friends. Resolved without following a
 * symlink at the last component: the lowers are ours, but be strict. */
static void apply_masks(const char *root) {
  char target[PATH_MAX], null_path[PATH_MAX];
  path_join(null_path, sizeof null_path, root, "/dev/null");
  for (int i = 0; i < cfg.n_masks; i++) {
    STEP("mask");
    struct stat st;
    path_join(target, sizeof target, root, cfg.masks[i]);
    if (lstat(target, &st) < 0) { if (errno == ENOENT) continue; die(EXIT_MOUNT, "stat %s", target); }
    if (S_ISDIR(st.st_mode)) {
      if (mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,nr_inodes=1") < 0)
        die(EXIT_MOUNT, "mask dir %s", target);
    } else if (!S_ISLNK(st.st_mode)) {
      if (mount(null_path, target, NULL, MS_BIND, NULL) < 0) die(EXIT_MOUNT, "mask file %s", target);
    }
  }
  for (int i = 0; i < cfg.n_readonly; i++) {
    STEP("readonly");
    struct stat st;
    path_join(target, sizeof target, root, cfg.readonly[i]);
    if (lstat(target, &st) < 0) { if (errno == ENOENT) continue; die(EXIT_MOUNT, "stat %s", target); }
    if (S_ISLNK(st.st_mode)) continue;
    if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0) die(EXIT_MOUNT, "bind %s", target);
    if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      die(EXIT_MOUNT, "remount %s read-only", target);
  }
}

/* Runs while we still hold the host's uid 0 for file access (with
 * capabilities only in our own user namespace): the attach point may sit in
 * a 0700 state dir. Everything after works relative to the new root. */
static void attach_root_layer(int root_fd) {
  /* Our copy of the host mounts must not propagate back to the host. */
  STEP("make_root_private");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die(EXIT_MOUNT, "make / private");

  STEP("attach_root");
  if (syscall(SYS_move_mount, root_fd, "", AT_FDCWD, cfg.root_mountpoint, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    die(EXIT_MOUNT, "move_mount root layer to %s", cfg.root_mountpoint);
  close(root_fd);
  if (chdir(cfg.root_mountpoint) < 0) die(EXIT_MOUNT, "chdir %s", cfg.root_mountpoint);
}

/* As root of the user namespace, in the new root (our cwd). Files made here
 * belong to ids the namespace can map. */
static void finish_filesystem(void) {
  /* A proc of our own pid namespace: the host's processes are not in it. */
  STEP("mount_proc");
  if (mount("proc", "./proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL) < 0) die(EXIT_MOUNT, "mount proc");

  /* Namespaced sysctls (user.max_user_namespaces=0: no nested user
   * namespace even if a call slipped past seccomp), before /proc/sys turns
   * read-only below. */
  for (int i = 0; i < cfg.n_sysctls; i++) {
    STEP("sysctl");
    char path[PATH_MAX];
    const char *eq = strchr(cfg.sysctls[i], '=');
    if ((size_t)snprintf(path, sizeof path, "./proc/sys/%.*s", (int)(eq - cfg.sysctls[i]), cfg.sysctls[i]) >= sizeof path) { errno = ENAMETOOLONG; die(EXIT_MOUNT, "sysctl path"); }
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) die(EXIT_MOUNT, "open %s", path);
    ssize_t len = (ssize_t)strlen(eq + 1);
    if (write(fd, eq + 1, (size_t)len) != len) die(EXIT_MOUNT, "write %s", path);
    close(fd);
  }

  setup_dev(".");
  apply_masks(".");

  /* pivot_root(".", ".") stacks the old root under the new one; detaching
   * it leaves no path back to the host filesystem. */
  STEP("pivot_root");
  if (syscall(SYS_pivot_root, ".", ".") < 0) die(EXIT_MOUNT, "pivot_root");
  if (umount2(".", MNT_DETACH) < 0) die(EXIT_MOUNT, "detach old root");
  if (chdir("/") < 0) die(EXIT_MOUNT, "chdir /");

  if (cfg.hostname) {
    STEP("sethostname");
    if (sethostname(cfg.hostname, strlen(cfg.hostname)) < 0) die(EXIT_MOUNT, "sethostname");
  }
}

/* ---------- 10. the program ---------- */

static void drop_capabilities(void) {
  STEP("drop_bounding_caps");
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
    if (errno == EINVAL) break;  /* past CAP_LAST_CAP: all dropped */
    die(EXIT_PRIVS, "drop bounding cap %d", cap);
  }
  STEP("clear_ambient_caps");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) die(EXIT_PRIVS, "clear ambient caps");
}

static void clear_capability_sets(void) {
  STEP("capset_zero");
  struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) < 0) die(EXIT_PRIVS, "capset");
}

/* Move the fds handed over on purpose to their agreed numbers and close
 * every other one, so nothing of the host leaks past execve. */
static void arrange_fds(void) {
  STEP("arrange_fds");
  int high[8], max_target = 2;
  /* Keep the error pipe clear of the numbers the program expects. */
  int status_high = fcntl(cfg.status_fd, F_DUPFD_CLOEXEC, 64);
  if (status_high < 0) die(EXIT_PRIVS, "dup error pipe");
  cfg.status_fd = status_high;
  for (int i = 0; i < cfg.n_passes; i++) {
    high[i] = fcntl(cfg.passes[i].host_fd, F_DUPFD_CLOEXEC, 64);
    if (high[i] < 0) die(EXIT_PRIVS, "dup fd %d", cfg.passes[i].host_fd);
  }
  for (int i = 0; i < cfg.n_passes; i++) {
    if (dup2(high[i], cfg.passes[i].child_fd) < 0) die(EXIT_PRIVS, "dup2 to fd %d", cfg.passes[i].child_fd);
    if (cfg.passes[i].child_fd > max_target) max_target = cfg.passes[i].child_fd;
  }
  for (int fd = 3; fd <= max_target; fd++) {
    int wanted = 0;
    for (int i = 0; i < cfg.n_passes; i++) wanted |= cfg.passes[i].child_fd == fd;
    if (!wanted) close(fd);
  }
  /* The error pipe stays open (cloexec) until execve succeeds. */
  if (syscall(SYS_close_range, max_target + 1, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0)
    die(EXIT_PRIVS, "close_range");
}

static void load_seccomp(struct sock_fprog *prog) {
  STEP("read_seccomp");
  prog->len = 0; prog->filter = NULL;
  if (cfg.seccomp_fd < 0) return;
  static struct sock_filter filter[4096];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(cfg.seccomp_fd, (char *)filter + got, sizeof filter - got);
    if (n < 0) { if (errno == EINTR) continue; die(EXIT_PRIVS, "read seccomp program"); }
    if (n == 0) break;
    got += (size_t)n;
    if (got == sizeof filter) { errno = E2BIG; die(EXIT_PRIVS, "seccomp program too long"); }
  }
  close(cfg.seccomp_fd);
  if (got == 0 || got % sizeof(struct sock_filter)) { errno = EINVAL; die(EXIT_PRIVS, "seccomp program of %zu bytes", got); }
  prog->len = (unsigned short)(got / sizeof(struct sock_filter));
  prog->filter = filter;
}

/* With --park: monitor [0] <-> program [1]. The program says "p" once it is
 * ready to run; the monitor answers with what to run (see await_start). */
static int start_sock[2] = { -1, -1 };

/* The largest start command: arguments and environment of one program. */
#define MAX_START (256 * 1024)

/* --park: the sandbox is whole, the program's process has dropped every
 * privilege and waits, under its seccomp filter, for what to run: a u32
 * length, then NUL-separated arguments (--chdir, --setenv, -- ARGV...),
 * parsed as our own command line was, on top of it. */
static void await_start(void) {
  STEP("await_start");
  if (write(start_sock[1], "p", 1) != 1) die(EXIT_ARGS, "report parked");
  uint32_t len;
  /* EOF: the gateway let the sandbox go without starting it. */
  if (read_full(start_sock[1], &len, sizeof len) < 0) _exit(0);
  if (len == 0 || len > MAX_START) { errno = E2BIG; die(EXIT_ARGS, "start of %u bytes", len); }
  static char blob[MAX_START + 1];
  static char *args[MAX_START / 2 + 2];
  if (read_full(start_sock[1], blob, len) < 0) die(EXIT_ARGS, "read the start command");
  close(start_sock[1]);
  blob[len] = 0;
  int n = 0;
  args[n++] = "fnbox-start";
  for (uint32_t at = 0; at < len; at += (uint32_t)strlen(blob + at) + 1) args[n++] = blob + at;
  args[n] = NULL;
  parse_args(n, args);
}

__attribute__((noreturn))
static void exec_program(void) {
  struct sock_fprog seccomp_prog;
  load_seccomp(&seccomp_prog);
  /* arrange_fds hands over or closes the low fds: keep the start socket clear of them. */
  if (cfg.park && (start_sock[1] = fcntl(start_sock[1], F_DUPFD_CLOEXEC, 64)) < 0) die(EXIT_PRIVS, "dup start socket");

  /* A new session: no controlling terminal to push input into (TIOCSTI). */
  STEP("setsid");
  if (setsid() < 0) die(EXIT_PRIVS, "setsid");
  /* Before the rlimits: a low RLIMIT_NOFILE would refuse our dups. */
  arrange_fds();

  STEP("rlimits");
  for (int i = 0; i < cfg.n_rlimits; i++)
    if (setrlimit(cfg.rlimits[i].resource, &cfg.rlimits[i].value) < 0) die(EXIT_PRIVS, "setrlimit %d", cfg.rlimits[i].resource);

  /* The bounding set can only be emptied while we still hold CAP_SETPCAP. */
  drop_capabilities();
  STEP("setresgid");
  if (setresgid(cfg.gid, cfg.gid, cfg.gid) < 0) die(EXIT_PRIVS, "setresgid %u", cfg.gid);
  STEP("setresuid");
  if (setresuid(cfg.uid, cfg.uid, cfg.uid) < 0) die(EXIT_PRIVS, "setresuid %u", cfg.uid);
  clear_capability_sets();
  /* After the id change, which would clear it. */
  STEP("pdeathsig");
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(EXIT_PRIVS, "PR_SET_PDEATHSIG");

  STEP("no_new_privs");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die(EXIT_PRIVS, "PR_SET_NO_NEW_PRIVS");

  /* Last thing before execve, so the filter need not allow our setup. */
  if (seccomp_prog.len) {
    STEP("seccomp");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &seccomp_prog) < 0) die(EXIT_PRIVS, "seccomp");
  }

  /* Booted ahead (--park): all of the above was done before the program was known. */
  if (cfg.park) await_start();

  /* As the program's uid: it must be allowed into its working directory. */
  STEP("chdir");
  if (chdir(cfg.cwd) < 0) die(EXIT_PRIVS, "chdir %s", cfg.cwd);

  STEP("execve");
  execve(cfg.argv[0], cfg.argv, cfg.env);
  die(EXIT_EXEC, "execve %s", cfg.argv[0]);
}

/* ---------- 7-9. PID 1 of the sandbox ---------- */

/* Pipes shared by monitor and child. */
static int go_pipe[2];    /* monitor -> child: ids are mapped */
static int exit_pipe[2];  /* init -> monitor: the program's wait status */

__attribute__((noreturn))
static void sandbox_init(int root_fd) {
  char go;
  close(go_pipe[1]);
  close(exit_pipe[0]);
  if (start_sock[0] >= 0) close(start_sock[0]);
  STEP("wait_for_release");
  if (read(go_pipe[0], &go, 1) != 1) _exit(EXIT_IDMAP);  /* monitor died or failed */
  close(go_pipe[0]);

  /* v1 hierarchies have no CLONE_INTO_CGROUP: the child joins them itself,
   * before it does anything else. A thread that writes 0 to `tasks` moves
   * only itself, and the kernel then skips the machine-wide rwsem that a
   * move by pid write-locks (on an idle host without favordynmods, a wait
   * for an RCU grace period: ~8 ms of a boot). The files were opened by
   * the monitor, as host root: the kernel checks the opener's credentials. */
  STEP("join_cgroup1");
  for (int i = 0; i < cfg.n_cgroup1; i++) {
    if (write(cfg.cgroup1_fds[i], "0", 1) != 1) die(EXIT_IDMAP, "join %s", cfg.cgroup1[i]);
    close(cfg.cgroup1_fds[i]);
  }

  /* Not dumpable: the program cannot open /proc/1/exe (the host launcher). */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die(EXIT_IDMAP, "PR_SET_DUMPABLE");
  set_process_name("fnbox-init", "fnbox-init");
  /* Joined the cgroups before this point, so the namespace roots there. */
  STEP("unshare_cgroup_ns");
  if (unshare(CLONE_NEWCGROUP) < 0) die(EXIT_IDMAP, "unshare cgroup namespace");

  attach_root_layer(root_fd);

  /* Root of the user namespace now; the host uid behind it is unprivileged. */
  STEP("become_ns_root");
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die(EXIT_IDMAP, "setresuid 0 in user namespace");
  /* A change of credentials clears the parent-death signal: set it again,
   * and make sure the monitor did not die in between. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(EXIT_IDMAP, "PR_SET_PDEATHSIG");
  /* getppid() is 0 across a pid namespace; the monitor still reads the
   * error pipe, so a write end with no reader means it is gone. */
  struct pollfd monitor_alive = { cfg.status_fd, 0, 0 };
  if (poll(&monitor_alive, 1, 0) < 0 || (monitor_alive.revents & POLLERR)) _exit(EXIT_IDMAP);

  finish_filesystem();

  /* A namespace of our own (none was pooled): ours to configure, as its root. */
  if (cfg.loopback_up && pooled_netns < 0) {
    STEP("loopback_up");
    if (bring_loopback_up() < 0) die(EXIT_MOUNT, "bring lo up");
  }

  STEP("fork_program");
  pid_t program = fork();
  if (program < 0) die(EXIT_INIT, "fork");
  if (program == 0) exec_program();

  /* Init keeps only the exit pipe: channel fds held here would hide EOF. */
  int keep = exit_pipe[1];
  if (dup2(keep, 3) < 0) die(EXIT_INIT, "dup2 exit pipe");
  syscall(SYS_close_range, 4, ~0U, 0);
  cfg.status_fd = -1;
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }

  for (;;) {
    int status;
    pid_t done = waitpid(-1, &status, 0);
    if (done < 0) { if (errno == EINTR) continue; _exit(EXIT_INIT); }
    if (done == program) {
      (void)!write(3, &status, sizeof status);
      /* Our exit takes every other process of the namespace with it. */
      _exit(0);
    }
  }
}

/* ---------- 5. ids and cgroups, from the monitor ---------- */

static void write_file(const char *path, const char *data) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die(EXIT_IDMAP, "open %s", path);
  ssize_t len = (ssize_t)strlen(data);
  if (write(fd, data, (size_t)len) != len) die(EXIT_IDMAP, "write %s", path);
  close(fd);
}

/* The sandbox's cgroup directories and limits, exactly as TypeScript listed
 * them (src/sandbox/cgroup). Made here rather than in the gateway: each
 * mkdir waits on the kernel's one cgroup lock, which the boots around it
 * hold in turn, and the gateway's only thread must not wait there. */
static void make_cgroups(void) {
  STEP("make_cgroups");
  for (int i = 0; i < cfg.n_cgroup_mkdirs; i++)
    if (mkdir(cfg.cgroup_mkdirs[i], 0755) < 0) die(EXIT_IDMAP, "mkdir %s", cfg.cgroup_mkdirs[i]);
  for (int i = 0; i + 1 < cfg.n_cgroup_writes; i += 2) write_file(cfg.cgroup_writes[i], cfg.cgroup_writes[i + 1]);
}

static void write_id_map(pid_t pid, const char *file, struct id_map *maps, int n) {
  char path[64], data[512];
  size_t used = 0;
  for (int i = 0; i < n; i++)
    used += (size_t)snprintf(data + used, sizeof data - used, "%u %u %u\n", maps[i].inside, maps[i].outside, maps[i].count);
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  write_file(path, data);
}

static void map_ids(pid_t child) {
  char path[64];
  STEP("uid_map");
  write_id_map(child, "uid_map", cfg.uid_maps, cfg.n_uid_maps);
  STEP("setgroups_deny");
  snprintf(path, sizeof path, "/proc/%d/setgroups", child);
  write_file(path, "deny");
  STEP("gid_map");
  write_id_map(child, "gid_map", cfg.gid_maps, cfg.n_gid_maps);
}

/* The hostname lives in the sandbox's UTS namespace: step in, set, step
 * back. 0, or -1 with errno. */
static int set_sandbox_hostname(pid_t init, const char *name) {
  char ns_path[64];
  snprintf(ns_path, sizeof ns_path, "/proc/%d/ns/uts", init);
  int home = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
  int theirs = open(ns_path, O_RDONLY | O_CLOEXEC);
  int named = home >= 0 && theirs >= 0 && setns(theirs, CLONE_NEWUTS) == 0;
  int saved = errno;
  if (named && sethostname(name, strlen(name)) < 0) { named = 0; saved = errno; }
  if (home >= 0 && setns(home, CLONE_NEWUTS) < 0) die(EXIT_MOUNT, "return to host UTS namespace");
  if (home >= 0) close(home);
  if (theirs >= 0) close(theirs);
  errno = saved;
  return named ? 0 : -1;
}

/* ---------- 6. per-call root reset (DESIGN.md §2) ---------- */

/* Write end of the program's gate: one byte per root swap, so that a call
 * sent while its swap is under way waits in the runtime, not in a round
 * trip through the gateway. Non-blocking: a program that never reads its
 * gate cannot stall us, it only waits on itself. */
static int gate_write_fd = -1;

static void announce_swap(void) {
  if (gate_write_fd >= 0) (void)!write(gate_write_fd, "s", 1);
}

/* What a swap knows of the sandbox's processes. The swap reads these from
 * inside the sandbox's mount namespace, where host paths do not resolve:
 * the files are opened once, at the first swap, from the host's. */
#define MAX_HELD 64
struct hold {
  int opened, procs_fd, proc_dir_fd, freeze_fd, events_fd;
  pid_t before[MAX_HELD]; int n_before;   /* its processes just before the swap, init aside */
  int frozen; pid_t stopped[MAX_HELD]; int n_stopped;
};

struct sandbox_handle {
  pid_t init; int mnt_ns_fd; int host_mnt_fd;
  struct hold hold;
  struct layer layer;
  /* The next reset's layer, built while the program runs a call: a reset
   * then only swaps (tmpfs + overlay creation is half of its cost). Not
   * built at boot but after the first swap: a sandbox whose calls write
   * nothing never needs one, and each layer held costs three expedited RCU
   * grace periods when it goes, which parallel boots queue behind. */
  struct layer next; int has_next;
  /* The fd the gateway reaches the writable layer by (/proc/PID/fd/N):
   * one number for the sandbox's life, moved onto each new layer's tmpfs,
   * so a swap it does not wait for need not tell it where the layer is. */
  int upper_alias;
  /* This swap's only news is the gate (a "reset quiet"): the gateway hears
   * only of a failure. */
  int quiet;
};

/* Detached copies of the sandbox's /proc and /dev trees, with the masks
 * and read-only submounts on them, for a layer about to become its root:
 * a reset then only attaches them (copying /proc's nine mounts and /dev's
 * seven is ~70 us). Copies, not moves, so that a process resolving
 * /dev/zero during the swap still finds it under the old root until
 * pivot_root switches it over. Runs in the sandbox's mount namespace. */
static int clone_proc_and_dev(struct sandbox_handle *sb, struct layer *layer) {
  const unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE;
  if (layer->proc_fd < 0) layer->proc_fd = (int)syscall(SYS_open_tree, sb->layer.root_fd, "proc", flags);
  if (layer->dev_fd < 0) layer->dev_fd = (int)syscall(SYS_open_tree, sb->layer.root_fd, "dev", flags);
  return layer->proc_fd >= 0 && layer->dev_fd >= 0 ? 0 : -1;
}

static void prepare_next_layer(struct sandbox_handle *sb) {
  if (sb->has_next) return;
  make_root_layer(&sb->next, EXIT_LAYER);
  sb->has_next = 1;
  /* Optional here: a copy that fails is made again, and reported, by the reset. */
  if (sb->mnt_ns_fd >= 0 && setns(sb->mnt_ns_fd, CLONE_NEWNS) == 0) {
    (void)clone_proc_and_dev(sb, &sb->next);
    if (setns(sb->host_mnt_fd, CLONE_NEWNS) < 0) die(EXIT_MOUNT, "return to host mount namespace");
  }
}

/* Lets go of a layer nobody runs on; from the monitor's own mount namespace. */
static void release_layer(struct layer *layer) {
  if (layer->proc_fd >= 0) close(layer->proc_fd);
  if (layer->dev_fd >= 0) close(layer->dev_fd);
  if (layer->root_fd >= 0) close(layer->root_fd);
  if (layer->tmpfs_fd >= 0) close(layer->tmpfs_fd);
  if (layer->holder[0]) {
    umount2(layer->holder, MNT_DETACH);
    rmdir(layer->holder);
  }
}

static void open_hold_files(struct hold *hold) {
  if (hold->opened) return;
  hold->opened = 1;
  hold->procs_fd = hold->proc_dir_fd = hold->freeze_fd = hold->events_fd = -1;
  const char *dir = cfg.cgroup2 ? cfg.cgroup2 : cfg.n_cgroup1 ? cfg.cgroup1[0] : NULL;
  char path[PATH_MAX];
  if (dir && (size_t)snprintf(path, sizeof path, "%s/cgroup.procs", dir) < sizeof path)
    hold->procs_fd = open(path, O_RDONLY | O_CLOEXEC);
  hold->proc_dir_fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  /* Optional: a kernel without cgroup.freeze (before 5.2) only loses the freezing. */
  if (cfg.cgroup2 && (size_t)snprintf(path, sizeof path, "%s/cgroup.freeze", cfg.cgroup2) < sizeof path)
    hold->freeze_fd = open(path, O_WRONLY | O_CLOEXEC);
  if (cfg.cgroup2 && (size_t)snprintf(path, sizeof path, "%s/cgroup.events", cfg.cgroup2) < sizeof path)
    hold->events_fd = open(path, O_RDONLY | O_CLOEXEC);
}

/* The sandbox's processes (main threads) but its init, up to `max`. */
static int read_pids(struct hold *hold, pid_t init, pid_t *pids, int max) {
  char list[4096];
  ssize_t got = hold->procs_fd >= 0 ? pread(hold->procs_fd, list, sizeof list - 1, 0) : -1;
  if (got <= 0) return 0;
  list[got] = 0;
  int n = 0;
  for (char *next = list, *end; n < max; next = end) {
    long pid = strtol(next, &end, 10);
    if (end == next) break;
    if (pid != init) pids[n++] = (pid_t)pid;
  }
  return n;
}

static int set_frozen(struct hold *hold, const char *value) {
  return hold->freeze_fd >= 0 && pwrite(hold->freeze_fd, value, 1, 0) == 1 ? 0 : -1;
}

static void pause_20us(void) {
  struct timespec pause = { 0, 20000 };
  nanosleep(&pause, NULL);
}

/* Running, or asleep where no signal reaches: maybe inside a path lookup. */
static int maybe_in_kernel(char state) {
  return state == 'R' || state == 'D';
}

static char process_state(struct hold *hold, pid_t pid) {
  char path[32], buf[512];
  snprintf(path, sizeof path, "%d/stat", pid);
  int fd = openat(hold->proc_dir_fd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;  /* gone */
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *name_end = strrchr(buf, ')');  /* the command name may hold anything */
  return name_end && name_end[1] == ' ' ? name_end[2] : 'R';
}

static void wait_frozen(struct hold *hold, int deadline_ms) {
  char buf[256];
  long long until = now_us() + deadline_ms * 1000LL;
  int frozen = 0;
  while (hold->events_fd >= 0 && !frozen && now_us() < until) {
    ssize_t n = pread(hold->events_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) break;
    buf[n] = 0;
    frozen = strstr(buf, "frozen 1") != NULL;
    /* Polled, not waited for: the kernel posts the change from a worker,
     * often a millisecond after the tasks stopped. */
    if (!frozen) pause_20us();
  }
}

/* A path lookup that began on the old root and is still under way when
 * that root is detached finds its /dev and /proc gone: a lazy unmount
 * unhashes the whole tree at once. (Copies, not moves, close the window
 * before pivot_root; this one is after.) A process asleep in read, poll or
 * wait has no lookup under way, and the usual sandbox between calls is an
 * idle runtime (or one waiting at its gate for this very swap) and its
 * init. Any process running or in uninterruptible sleep is held for the
 * swap: the cgroup is frozen (every task stops at its next return to user
 * space, after finishing what it was doing in the kernel), or, with no
 * cgroup2 directory, those processes get SIGSTOP. Looked at as late as
 * possible, just before pivot_root, so a runtime handed its next call has
 * time to reach its gate. Freezing always would wake every sleeping thread
 * (~0.3 ms a swap), so only main threads are looked at: a worker thread
 * resolving a path during the ~0.1 ms swap (node's fs.promises from a
 * timer between calls) can still meet the race; looking at every thread
 * would cost ~10 us each. */
static void hold_busy_sandbox(struct hold *hold, pid_t init) {
  hold->frozen = 0;
  hold->n_stopped = 0;
  hold->n_before = read_pids(hold, init, hold->before, MAX_HELD);
  pid_t busy[MAX_HELD];
  int n_busy = 0;
  /* The init only waits for children: it does no lookups after its setup. */
  for (int i = 0; i < hold->n_before; i++)
    if (maybe_in_kernel(process_state(hold, hold->before[i]))) busy[n_busy++] = hold->before[i];
  /* A runtime that just answered a call, or was just handed one, is often
   * on its way back to sleep: give it ~0.1 ms before freezing (~0.3 ms). */
  for (int round = 0; n_busy > 0 && round < 5; round++) {
    pause_20us();
    int still = 0;
    for (int i = 0; i < n_busy; i++)
      if (maybe_in_kernel(process_state(hold, busy[i]))) busy[still++] = busy[i];
    n_busy = still;
  }
  if (n_busy == 0) return;
  STEP("hold_sandbox");
  if (set_frozen(hold, "1") == 0) {
    hold->frozen = 1;
    wait_frozen(hold, 100);  /* a task stuck in the kernel for longer is not in a lookup */
    return;
  }
  for (int i = 0; i < n_busy; i++)
    if (kill(busy[i], SIGSTOP) == 0) hold->stopped[hold->n_stopped++] = busy[i];
  long long until = now_us() + 100000;
  for (int i = 0; i < hold->n_stopped; i++) {
    char state;
    while ((state = process_state(hold, hold->stopped[i])) && state != 'T' && state != 'Z' && now_us() < until)
      pause_20us();
  }
}

static void release_sandbox(struct hold *hold) {
  if (hold->frozen && set_frozen(hold, "0") < 0) die(EXIT_MOUNT, "thaw %s", cfg.cgroup2);
  for (int i = 0; i < hold->n_stopped; i++) kill(hold->stopped[i], SIGCONT);
  hold->frozen = 0;
  hold->n_stopped = 0;
}

/* pivot_root moves every process whose root is the old root, but a child
 * forked during the swap copies its parent's root after that walk and keeps
 * the old one: it would see the previous call's files. Only a process that
 * was not there before the swap can be one; any such process on another
 * root is killed before the swap is announced. (A fork still under way
 * shows up in the cgroup a moment later: the gateway looks again when it
 * hears back.) Returns how many. */
static int kill_stale_roots(struct hold *hold, pid_t init, dev_t root_dev) {
  pid_t now[MAX_HELD];
  int n_now = read_pids(hold, init, now, MAX_HELD), killed = 0;
  for (int i = 0; i < n_now; i++) {
    int known = 0;
    for (int j = 0; j < hold->n_before && !known; j++) known = now[i] == hold->before[j];
    if (known) continue;
    char path[32];
    struct stat st;
    snprintf(path, sizeof path, "%d/root", now[i]);
    if (fstatat(hold->proc_dir_fd, path, &st, 0) == 0 && st.st_dev != root_dev && kill(now[i], SIGKILL) == 0) killed++;
  }
  return killed;
}

/* The program first (its next call may be waiting at the gate), then the
 * gateway, unless it asked not to wait for us. */
static void report_swap(struct sandbox_handle *sb, int stale, long long started) {
  announce_swap();
  if (!sb->quiet)
    emit("{\"event\":\"reset\",\"ok\":true,\"stale\":%d,\"t0\":%lld,\"us\":%lld}", stale, started, now_us() - started);
}

static int reset_fail(struct sandbox_handle *sb, const char *step, struct layer *fresh) {
  int saved = errno;
  /* Back home whatever happened, or the next reset resolves paths wrongly. */
  if (setns(sb->host_mnt_fd, CLONE_NEWNS) < 0) die(EXIT_MOUNT, "return to host mount namespace");
  release_sandbox(&sb->hold);
  release_layer(fresh);
  emit("{\"event\":\"reset\",\"ok\":false,\"quiet\":%s,\"step\":\"%s\",\"errno\":%d,\"message\":\"%s\"}",
       sb->quiet ? "true" : "false", step, saved, strerror(saved));
  return -1;
}

/* Swap the running sandbox onto a fresh layer. Runs in the monitor: the
 * layer is built with host paths first (usually ahead), then we step into
 * the sandbox's mount namespace, attach the layer with its copies of /proc
 * and /dev, hold a busy sandbox still, pivot, and detach the old root.
 * pivot_root moves every process whose root is the old root. The swap is
 * announced on the program's gate, then reported to the gateway. */
static int reset_root(struct sandbox_handle *sb) {
  long long started = now_us();
  struct layer fresh = { .tmpfs_fd = -1, .root_fd = -1, .proc_fd = -1, .dev_fd = -1 };
  STEP("reset_layer");
  if (sb->has_next) {
    fresh = sb->next;
    sb->has_next = 0;
  } else make_root_layer(&fresh, EXIT_LAYER);

  if (sb->mnt_ns_fd < 0) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/mnt", sb->init);
    sb->mnt_ns_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (sb->mnt_ns_fd < 0) return reset_fail(sb, "open_mnt_ns", &fresh);
  }
  open_hold_files(&sb->hold);
  struct stat root;  /* its device tells processes on it from stale ones */
  if (fstat(fresh.root_fd, &root) < 0) return reset_fail(sb, "stat_new_root", &fresh);
  if (setns(sb->mnt_ns_fd, CLONE_NEWNS) < 0) return reset_fail(sb, "setns", &fresh);
  if (clone_proc_and_dev(sb, &fresh) < 0) return reset_fail(sb, "copy_proc_dev", &fresh);
  /* The layer's overlay is the sandbox's root: its fd, held since the layer
   * was made, saves a lookup through /proc/PID/root. */
  if (fchdir(sb->layer.root_fd) < 0 || chroot(".") < 0) return reset_fail(sb, "chroot", &fresh);
  /* Images carry the staging dir (src/images/store.ts); a program may have
   * removed or replaced it, and it lives in the layer we are about to
   * discard, so recreating it harms nothing. */
  const char *next = "/.fnbox-next";
  struct stat st;
  /* Looked up first: a mkdir that finds it costs ~15 us in an overlay. */
  if (lstat(next, &st) < 0 && (errno != ENOENT || mkdir(next, 0700) < 0 || lstat(next, &st) < 0))
    return reset_fail(sb, "mkdir_next", &fresh);
  if (!S_ISDIR(st.st_mode)) { errno = ENOTDIR; return reset_fail(sb, "check_next", &fresh); }
  if (syscall(SYS_move_mount, fresh.root_fd, "", AT_FDCWD, next, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    return reset_fail(sb, "move_mount", &fresh);
  if (syscall(SYS_move_mount, fresh.proc_fd, "", AT_FDCWD, "/.fnbox-next/proc", MOVE_MOUNT_F_EMPTY_PATH) < 0)
    return reset_fail(sb, "attach_proc", &fresh);
  if (syscall(SYS_move_mount, fresh.dev_fd, "", AT_FDCWD, "/.fnbox-next/dev", MOVE_MOUNT_F_EMPTY_PATH) < 0)
    return reset_fail(sb, "attach_dev", &fresh);
  close(fresh.proc_fd); fresh.proc_fd = -1;
  close(fresh.dev_fd); fresh.dev_fd = -1;
  if (chdir(next) < 0) return reset_fail(sb, "chdir_next", &fresh);
  /* Where the old layer's own tmpfs joins the old root just before that is
   * detached, so both go in one unmount: a detached tmpfs dropped by its fd
   * on its own costs one more expedited RCU grace period, and with several
   * sandboxes resetting at once those queue behind one another. Optional:
   * without it the tmpfs goes alone, as before. "/" is still the old root. */
  int old_tmpfs_home = -1;
  if (!sb->layer.holder[0] && sb->layer.tmpfs_fd >= 0) {
    const int how = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    old_tmpfs_home = open("/.fnbox-old", how);
    if (old_tmpfs_home < 0 && errno == ENOENT && mkdir("/.fnbox-old", 0700) == 0) old_tmpfs_home = open("/.fnbox-old", how);
  }
  /* The old layer's files are charged to the sandbox's memory until its
   * tmpfs is gone, and the next call's memory (its peak, its OOM margin)
   * must not include them: a layer holding more than a little goes before
   * the swap is announced. Deleting them first frees nothing (the old
   * overlay still holds their inodes); truncating them would SIGBUS a
   * process that still maps one. A small one (most calls write a file or
   * two; --small-layer-bytes, none by default) goes after the reply:
   * tearing an overlay and its tmpfs down is ~50 us of CPU, and at worst
   * the next call's peak counts that much that was not its own. */
  struct statfs usage;
  int small = fstatfs(sb->layer.tmpfs_fd, &usage) == 0 &&
              (unsigned long long)(usage.f_blocks - usage.f_bfree) * (unsigned long long)usage.f_bsize <= cfg.small_layer_bytes;
  hold_busy_sandbox(&sb->hold, sb->init);
  if (syscall(SYS_pivot_root, ".", ".") < 0) {
    if (old_tmpfs_home >= 0) close(old_tmpfs_home);
    return reset_fail(sb, "pivot_root", &fresh);
  }
  if (old_tmpfs_home >= 0) {
    /* Nobody runs on the old root now (pivot_root moved them all). */
    (void)syscall(SYS_move_mount, sb->layer.tmpfs_fd, "", old_tmpfs_home, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    close(old_tmpfs_home);
  }
  /* The gateway's path to the writable layer leads to the new one now. */
  if (dup3(fresh.tmpfs_fd, sb->upper_alias, O_CLOEXEC) < 0) die(EXIT_MOUNT, "move the writable layer's alias");
  int stale = kill_stale_roots(&sb->hold, sb->init, root.st_dev);
  /* Usually the program may start its next call now, before the old root
   * is detached (~0.1 ms, an RCU grace period): nobody runs on the old root
   * (pivot_root moved them all, stale ones are dying), no lookup was under
   * way on it as it was swapped out (every process was asleep, or we would
   * be holding one), and lookups from the new root never enter the old one
   * stacked on top of it. Otherwise: once it is gone. */
  int early = small && !sb->hold.frozen && sb->hold.n_stopped == 0;
  if (early) report_swap(sb, stale, started);
  if (umount2(".", MNT_DETACH) < 0) {
    if (early) die(EXIT_MOUNT, "detach the old root after the swap was announced");
    return reset_fail(sb, "detach_old_root", &fresh);
  }
  if (setns(sb->host_mnt_fd, CLONE_NEWNS) < 0) die(EXIT_MOUNT, "return to host mount namespace");
  release_sandbox(&sb->hold);
  /* The old overlay holds its own clone of the upper: the holder can go. */
  struct layer old = sb->layer;
  sb->layer = fresh;
  if (!small) release_layer(&old);
  if (!early) report_swap(sb, stale, started);
  if (small) release_layer(&old);
  return 0;
}

/* A spare sandbox (booted on an empty code layer: its runtime is loaded,
 * no function yet) becomes one function's. Its code layer and hostname
 * change, then the usual reset moves the running runtime onto a root with
 * the function's code. One way only: nothing hands a sandbox back.
 * Command: "adopt HOSTNAME CODE_LAYER_PATH". */
static int adopt(struct sandbox_handle *sb, char *args) {
  struct layer none = { .tmpfs_fd = -1, .root_fd = -1, .proc_fd = -1, .dev_fd = -1 };
  char *path = strchr(args, ' ');
  if (!path || path == args || path - args > 64) { errno = EINVAL; return reset_fail(sb, "adopt_arguments", &none); }
  *path++ = 0;
  STEP("open_code_layer");
  int code = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (code < 0) return reset_fail(sb, "open_code_layer", &none);

  STEP("adopt_hostname");
  if (set_sandbox_hostname(sb->init, args) < 0) {
    int saved = errno;
    close(code);
    errno = saved;
    return reset_fail(sb, "adopt_hostname", &none);
  }

  /* The layer built ahead has the old code in it. */
  if (sb->has_next) {
    release_layer(&sb->next);
    sb->has_next = 0;
  }
  close(cfg.lower_fds[0]);
  cfg.lower_fds[0] = code;
  return reset_root(sb);
}

/* ---------- connections to the gateway ---------- */

/* Each connection starts with one line naming the sandbox and the role of
 * the stream, so the gateway can pair it with the sandbox it asked for. */
static int connect_role(const char *role) {
  STEP("connect_gateway");
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(cfg.connect_path) >= sizeof addr.sun_path) { errno = ENAMETOOLONG; die(EXIT_ARGS, "socket path %s", cfg.connect_path); }
  strcpy(addr.sun_path, cfg.connect_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(EXIT_ARGS, "socket");
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die(EXIT_ARGS, "connect %s", cfg.connect_path);
  char hello[256];
  int n = snprintf(hello, sizeof hello, "fnbox-hello %s %s %d\n", cfg.id, role, getpid());
  if (n < 0 || n >= (int)sizeof hello || write(fd, hello, (size_t)n) != n) die(EXIT_ARGS, "hello on %s", role);
  return fd;
}

static void push_pass(int host_fd, int child_fd) {
  cfg.passes[cfg.n_passes].host_fd = host_fd;
  cfg.passes[cfg.n_passes].child_fd = child_fd;
  cfg.n_passes++;
}

/* Decide which host fd becomes the program's 0, 1, 2, channel and gate. */
static void open_streams(void) {
  if (!cfg.connect_path) return;  /* one-shot: the program inherits our stdio */
  int control = connect_role("control");
  cfg.status_fd = cfg.control_fd = control;
  STEP("open_dev_null");
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) die(EXIT_ARGS, "open /dev/null");
  push_pass(null_fd, 0);
  int log_fd = cfg.capture_logs ? connect_role("log") : null_fd;
  push_pass(log_fd, 1);
  push_pass(log_fd, 2);
  if (cfg.channel_fd) push_pass(connect_role("channel"), cfg.channel_fd);
  if (cfg.gate_fd) {
    STEP("gate_pipe");
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0) die(EXIT_ARGS, "pipe2 for the gate");
    if (fcntl(gate[1], F_SETFL, O_NONBLOCK) < 0) die(EXIT_ARGS, "gate write end non-blocking");
    push_pass(gate[0], cfg.gate_fd);
    gate_write_fd = gate[1];
  }
}

/* ---------- the monitor ---------- */

/* Commands from the gateway, one per line, read as they come. */
static char command[PATH_MAX + 128];
static size_t command_len;

/* --park: once the program waits for its start (it says "p"), report
 * "parked" and wait for the gateway's "start HOSTNAME N" line and N bytes
 * of arguments: the hostname is set from here (the program has no
 * privilege left to), the arguments go on to the program as they are.
 * Returns 0 once they did, or when the setup failed (the error pipe says
 * how); -1 when the gateway let go of the sandbox first. */
static int await_claim(int error_fd, pid_t child, int upper_fd, long long *started) {
  STEP("await_claim");
  /* The control stream is read once the sandbox is parked: only then may it start. */
  struct pollfd fds[3] = { { start_sock[0], POLLIN, 0 }, { cfg.control_fd, 0, 0 }, { error_fd, POLLIN, 0 } };
  pid_t program = 0;
  for (;;) {
    if (poll(fds, 3, -1) < 0) { if (errno == EINTR) continue; die(EXIT_INIT, "poll"); }
    if (fds[2].revents) return 0;
    if (fds[0].revents) {
      char parked;
      if (read(start_sock[0], &parked, 1) != 1) return 0;
      /* The init's only child: its priority goes back up at the start. */
      STEP("find_program");
      char path[64], pids[64] = "";
      snprintf(path, sizeof path, "/proc/%d/task/%d/children", child, child);
      int children = open(path, O_RDONLY | O_CLOEXEC);
      ssize_t got = children >= 0 ? read(children, pids, sizeof pids - 1) : -1;
      if (children >= 0) close(children);
      program = got > 0 ? (pid_t)atoi(pids) : 0;
      if (program <= 0) { errno = ESRCH; die(EXIT_INIT, "find the parked program"); }
      emit("{\"event\":\"parked\",\"pid\":%d,\"monitor\":%d,\"upper_fd\":%d}", child, getpid(), upper_fd);
      /* Booted as far as it goes: the zygote may use the CPU again. */
      if (booting_fd >= 0) close(booting_fd);
      booting_fd = -1;
      fds[0].fd = -1;
      fds[1].events = POLLIN;
      continue;
    }
    if (!fds[1].revents) continue;
    if (!program) return -1;  /* the gateway hung up before the sandbox was parked */
    ssize_t r = read(cfg.control_fd, command + command_len, sizeof command - command_len);
    if (r <= 0) return -1;
    command_len += (size_t)r;
    char *newline = memchr(command, '\n', command_len);
    if (!newline) {
      if (command_len == sizeof command) { errno = E2BIG; die(EXIT_ARGS, "control line too long"); }
      continue;
    }
    *newline = 0;
    unsigned len;
    char hostname[65], tail;
    if (sscanf(command, "start %64s %u%c", hostname, &len, &tail) != 2 || len == 0 || len > MAX_START) {
      errno = EINVAL;
      die(EXIT_ARGS, "a parked sandbox takes only \"start HOSTNAME N\", got \"%.64s\"", command);
    }
    *started = now_us();
    STEP("start_priority");
    if (setpriority(PRIO_PROCESS, 0, 0) < 0 || setpriority(PRIO_PROCESS, (id_t)child, 0) < 0 || setpriority(PRIO_PROCESS, (id_t)program, 0) < 0)
      die(EXIT_INIT, "setpriority");
    STEP("start_hostname");
    if (set_sandbox_hostname(child, hostname) < 0) die(EXIT_MOUNT, "sethostname %s", hostname);
    STEP("pass_start");
    size_t have = command_len - (size_t)(newline + 1 - command);
    size_t first = have < len ? have : len;
    uint32_t len32 = len;
    /* A program gone meanwhile is told by the error pipe, so sends may fail. */
    int passing = send_full(start_sock[0], &len32, sizeof len32) == 0 && send_full(start_sock[0], newline + 1, first) == 0;
    for (size_t left = len - first; left > 0;) {
      ssize_t n = read(cfg.control_fd, command, left < sizeof command ? left : sizeof command);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return -1;
      if (passing) passing = send_full(start_sock[0], command, (size_t)n) == 0;
      left -= (size_t)n;
    }
    /* Whatever followed the arguments is the next command. */
    command_len = have > first ? have - first : 0;
    memmove(command, newline + 1 + first, command_len);
    close(start_sock[0]);
    start_sock[0] = -1;
    return 0;
  }
}

/* t1: CLOCK_MONOTONIC when the monitor saw its child go (diagnostics). */
static void report_exit(int status) {
  if (WIFEXITED(status)) emit("{\"event\":\"exit\",\"code\":%d,\"t1\":%lld}", WEXITSTATUS(status), now_us());
  else if (WIFSIGNALED(status)) emit("{\"event\":\"exit\",\"signal\":%d,\"t1\":%lld}", WTERMSIG(status), now_us());
}

static int run_monitor(int argc, char **argv) {
  long long started = now_us();
  int error_pipe[2];
  parse_args(argc, argv);

  /* If the gateway (or the zygote) dies, we die; our child dies with us. */
  STEP("pdeathsig");
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(EXIT_ARGS, "PR_SET_PDEATHSIG");
  if (getppid() != parent) _exit(EXIT_ARGS);
  /* Host supplementary groups would survive setgroups=deny: drop them. */
  STEP("setgroups");
  if (setgroups(0, NULL) < 0) die(EXIT_ARGS, "setgroups");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die(EXIT_ARGS, "PR_SET_DUMPABLE");

  open_streams();
  if (cfg.id) {
    char title[128];
    snprintf(title, sizeof title, "fnbox-monitor %s", cfg.id);
    set_process_name("fnbox-monitor", title);
  }

  if (cfg.seccomp_file) {
    STEP("open_seccomp");
    cfg.seccomp_fd = open(cfg.seccomp_file, O_RDONLY | O_CLOEXEC);
    if (cfg.seccomp_fd < 0) die(EXIT_ARGS, "open %s", cfg.seccomp_file);
  }

  /* Booted ahead, the sandbox is made at the lowest priority: on a host
   * with few cores it must not slow the sandboxes that run. Its monitor,
   * init and program get the usual one back when it is started. */
  STEP("park_nice");
  if (cfg.park && setpriority(PRIO_PROCESS, 0, 19) < 0) die(EXIT_ARGS, "setpriority");

  STEP("probe_overlay");
  if (attach_uppers < 0) attach_uppers = !detached_upper_works();
  if (attach_uppers) enter_private_mount_namespace();
  /* Layers are opened inside the namespace their mounts must belong to. */
  STEP("open_lowers");
  for (int i = 0; i < cfg.n_lowers; i++) {
    cfg.lower_fds[i] = open(cfg.lowers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cfg.lower_fds[i] < 0) die(EXIT_LAYER, "open layer %s", cfg.lowers[i]);
  }

  struct sandbox_handle sb = { .mnt_ns_fd = -1 };
  make_root_layer(&sb.layer, EXIT_LAYER);
  sb.upper_alias = fcntl(sb.layer.tmpfs_fd, F_DUPFD_CLOEXEC, 3);
  if (sb.upper_alias < 0) die(EXIT_LAYER, "alias the writable layer");

  STEP("open_host_mnt_ns");
  sb.host_mnt_fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  if (sb.host_mnt_fd < 0) die(EXIT_CLONE, "open /proc/self/ns/mnt");

  STEP("pipes");
  if (pipe2(go_pipe, O_CLOEXEC) < 0 || pipe2(error_pipe, O_CLOEXEC) < 0 || pipe2(exit_pipe, O_CLOEXEC) < 0)
    die(EXIT_CLONE, "pipe2");
  if (cfg.park && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, start_sock) < 0) die(EXIT_CLONE, "socketpair");

  make_cgroups();
  STEP("open_cgroup1");
  for (int i = 0; i < cfg.n_cgroup1; i++) {
    char tasks[PATH_MAX];
    if ((size_t)snprintf(tasks, sizeof tasks, "%s/tasks", cfg.cgroup1[i]) >= sizeof tasks) { errno = ENAMETOOLONG; die(EXIT_IDMAP, "%s", cfg.cgroup1[i]); }
    cfg.cgroup1_fds[i] = open(tasks, O_WRONLY | O_CLOEXEC);
    if (cfg.cgroup1_fds[i] < 0) die(EXIT_IDMAP, "open %s", tasks);
  }

  STEP("clone3");
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  /* A pooled network namespace is joined by the monitor and inherited by
   * the child (it is owned by the host's user namespace, so the sandbox
   * cannot reconfigure it); otherwise clone3 makes a fresh one. */
  if (pooled_netns >= 0) {
    if (setns(pooled_netns, CLONE_NEWNET) < 0) die(EXIT_CLONE, "join pooled network namespace");
    close(pooled_netns);
  } else args.flags |= CLONE_NEWNET;
  args.exit_signal = SIGCHLD;
  int cgroup_fd = -1;
  if (cfg.cgroup2) {
    cgroup_fd = open(cfg.cgroup2, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd < 0) die(EXIT_CLONE, "open cgroup %s", cfg.cgroup2);
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)cgroup_fd;
  }
  pid_t child = (pid_t)syscall(SYS_clone3, &args, sizeof args);
  if (child < 0) die(EXIT_CLONE, "clone3");
  if (child == 0) {
    /* Child errors reach the monitor through the error pipe, which closes
     * on the program's successful execve. */
    close(error_pipe[0]);
    if (booting_fd >= 0) close(booting_fd);
    cfg.status_fd = error_pipe[1];
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(EXIT_CLONE, "PR_SET_PDEATHSIG");
    sandbox_init(sb.layer.root_fd);
  }
  /* A gateway gone before we report must not kill us with SIGPIPE before
   * we reap the child. Set after the clone: the program keeps the default. */
  signal(SIGPIPE, SIG_IGN);
  if (cgroup_fd >= 0) close(cgroup_fd);
  for (int i = 0; i < cfg.n_cgroup1; i++) close(cfg.cgroup1_fds[i]);
  close(go_pipe[0]);
  close(error_pipe[1]);
  close(exit_pipe[1]);
  if (start_sock[1] >= 0) close(start_sock[1]);
  /* sb.layer.root_fd stays open: a reset steps into the sandbox's root by it. */
  sb.init = child;
  /* The program's streams are the child's business from here on. */
  for (int i = 0; i < cfg.n_passes; i++)
    if (cfg.passes[i].host_fd != cfg.control_fd && cfg.passes[i].host_fd > 2) close(cfg.passes[i].host_fd);
  if (cfg.seccomp_fd >= 0) close(cfg.seccomp_fd);

  map_ids(child);
  STEP("release");
  if (write(go_pipe[1], "g", 1) != 1) die(EXIT_IDMAP, "release child");
  close(go_pipe[1]);

  /* Booted ahead: the boot is timed from the start command on. */
  if (cfg.park && await_claim(error_pipe[0], child, sb.upper_alias, &started) < 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
  }

  /* EOF on the error pipe: the program's execve succeeded, or it died. */
  char error_line[1024];
  ssize_t got = 0, n;
  while ((n = read(error_pipe[0], error_line + got, sizeof error_line - 1 - (size_t)got)) > 0) got += n;
  close(error_pipe[0]);
  if (got > 0) {
    int status = 0, program_status = 0;
    /* Relay the child's own words; they already carry step and errno. */
    (void)!write(cfg.status_fd, error_line, (size_t)got);
    waitpid(child, &status, 0);
    if (read(exit_pipe[0], &program_status, sizeof program_status) == sizeof program_status) status = program_status;
    return WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : EXIT_INIT;
  }
  /* t0 is CLOCK_MONOTONIC, the clock of Node's process.hrtime: the gateway
   * can tell time spent reaching us from time spent booting. */
  emit("{\"event\":\"started\",\"pid\":%d,\"monitor\":%d,\"upper_fd\":%d,\"t0\":%lld,\"us\":%lld}",
       child, getpid(), sb.upper_alias, started, now_us() - started);
  if (booting_fd >= 0) close(booting_fd);
  booting_fd = -1;

  STEP("monitor");
  /* A swap's 20 us pauses would otherwise sleep the default 50 us slack
   * more. Set after the clone: the sandbox keeps the default. */
  (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  if (pidfd < 0) die(EXIT_INIT, "pidfd_open");
  /* The init writes the program's status to the exit pipe before it exits
   * and the kernel tears the namespaces down (~0.5 ms): report it from
   * there, then wait for the init itself. */
  struct pollfd fds[3] = { { pidfd, POLLIN, 0 }, { cfg.control_fd, POLLIN, 0 }, { exit_pipe[0], POLLIN, 0 } };
  int status = 0, program_status = 0, reported = 0;
  for (;;) {
    if (poll(fds, 3, -1) < 0) { if (errno == EINTR) continue; die(EXIT_INIT, "poll"); }
    if (fds[0].revents) break;
    if (fds[2].revents) {
      if (read(exit_pipe[0], &program_status, sizeof program_status) == sizeof program_status) {
        report_exit(program_status);
        reported = 1;
      }
      fds[2].fd = -1;
    }
    if (fds[1].revents) {
      ssize_t r = read(cfg.control_fd, command + command_len, sizeof command - command_len);
      if (r <= 0) {
        /* The gateway let go of us: the sandbox goes too. */
        kill(child, SIGKILL);
        fds[1].fd = -1;
        continue;
      }
      command_len += (size_t)r;
      char *newline;
      while ((newline = memchr(command, '\n', command_len))) {
        *newline = 0;
        int swapped = 1;
        sb.quiet = strcmp(command, "reset quiet") == 0;
        if (sb.quiet || strcmp(command, "reset") == 0) reset_root(&sb);
        else if (strncmp(command, "adopt ", 6) == 0) adopt(&sb, command + 6);
        else if (strcmp(command, "sync") == 0) {
          /* Commands are done in order: every one sent before this is done. */
          swapped = 0;
          emit("{\"event\":\"sync\"}");
        }
        else {
          swapped = 0;
          emit("{\"event\":\"error\",\"phase\":0,\"step\":\"control\",\"errno\":22,\"message\":\"unknown command\"}");
        }
        /* Reply sent: build the one after while the sandbox works. */
        if (swapped) prepare_next_layer(&sb);
        size_t rest = command_len - (size_t)(newline + 1 - command);
        memmove(command, newline + 1, rest);
        command_len = rest;
      }
      if (command_len == sizeof command) command_len = 0;
    }
  }

  if (waitpid(child, &status, 0) < 0) die(EXIT_INIT, "waitpid");
  /* Init hands over the program's status; without it, init itself was
   * killed (cgroup kill, OOM, our SIGKILL) and its status is the story. */
  if (reported || read(exit_pipe[0], &program_status, sizeof program_status) == sizeof program_status) status = program_status;
  if (!reported) report_exit(status);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

/* ---------- the zygote ---------- */

/* Live monitors, as pidfds: safe to signal even after their pids are reused. */
static int monitors[65536];
static int n_monitors;

/* Forget monitors that have exited (a pidfd turns readable then). */
static void forget_exited_monitors(void) {
  for (int i = 0; i < n_monitors;) {
    struct pollfd p = { monitors[i], POLLIN, 0 };
    if (poll(&p, 1, 0) == 1) {
      close(monitors[i]);
      monitors[i] = monitors[--n_monitors];
    } else i++;
  }
}

/* The gateway is gone: no monitor may outlive us (it would be reparented
 * and linger as a zombie), so kill what is left and wait for all of it. */
static int shut_down(void) {
  for (int i = 0; i < n_monitors; i++) syscall(SYS_pidfd_send_signal, monitors[i], SIGKILL, NULL, 0);
  /* With SIGCHLD ignored, wait() returns only once every child is gone. */
  while (wait(NULL) >= 0 || errno == EINTR) {}
  return 0;
}

/* Network namespaces made ahead, each handed to exactly one monitor. */
static int netns_pool[64];
static int n_netns;
static int netns_target;

static int make_pooled_netns(int home_netns) {
  if (unshare(CLONE_NEWNET) < 0) return -1;
  int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int up = bring_loopback_up();
  if (setns(home_netns, CLONE_NEWNET) < 0) die(EXIT_CLONE, "return to the zygote's network namespace");
  if (fd < 0 || up < 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  netns_pool[n_netns++] = fd;
  return 0;
}

/* Read ends of the booting pipes of monitors not yet started (see
 * booting_fd): the end hangs up when the monitor starts its program or dies. */
static int booting[1024];
static int n_booting;

/* Waits until a request is readable (1) or, when `refill` asks for it, until
 * no monitor is booting (0). Forgets monitors whose boot is over. */
static int wait_for_work(int refill) {
  static struct pollfd fds[1 + sizeof booting / sizeof booting[0]];
  for (;;) {
    fds[0] = (struct pollfd){ 0, POLLIN, 0 };
    for (int i = 0; i < n_booting; i++) fds[1 + i] = (struct pollfd){ booting[i], POLLIN, 0 };
    int timeout = refill && n_booting == 0 ? 0 : -1;
    if (poll(fds, 1 + (nfds_t)n_booting, timeout) < 0) {
      if (errno == EINTR) continue;
      return 1;  /* let the read report it */
    }
    for (int i = n_booting - 1; i >= 0; i--) {
      if (!fds[1 + i].revents) continue;
      close(booting[i]);
      booting[i] = booting[--n_booting];
    }
    if (fds[0].revents) return 1;
    if (refill && n_booting == 0) return 0;
  }
}

/* Request: u32 (little endian) length, then NUL-terminated arguments. */
static int serve_requests(void) {
  STEP("server");
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(EXIT_ARGS, "PR_SET_PDEATHSIG");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die(EXIT_ARGS, "PR_SET_DUMPABLE");
  /* Once for all monitors: they inherit the answer. */
  attach_uppers = !detached_upper_works();
  /* Monitors report for themselves; the kernel reaps them for us. */
  signal(SIGCHLD, SIG_IGN);
  static char request[256 * 1024];
  static char *args[1024];
  int home_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  for (;;) {
    /* Idle (no request waiting, no monitor booting): make one more network
     * namespace for later. Made right after a fork, it held the new monitor
     * off the CPU for ~0.8 ms of a ~6 ms boot. */
    if (wait_for_work(home_netns >= 0 && n_netns < netns_target) == 0) {
      if (make_pooled_netns(home_netns) < 0) netns_target = 0;  /* cannot: stop trying */
      continue;
    }
    uint32_t len;
    if (read_full(0, &len, sizeof len) < 0) return shut_down();
    if (len == 0 || len > sizeof request - 1) { errno = E2BIG; die(EXIT_ARGS, "request of %u bytes", len); }
    if (read_full(0, request, len) < 0) return shut_down();
    request[len] = 0;
    int n = 0;
    args[n++] = "fnbox-launcher";
    for (size_t at = 0; at < len && n < (int)(sizeof args / sizeof args[0]) - 1; at += strlen(request + at) + 1)
      args[n++] = request + at;
    args[n] = NULL;
    forget_exited_monitors();
    int netns = n_netns > 0 ? netns_pool[--n_netns] : -1;
    int boot_pipe[2] = { -1, -1 };
    if (n_booting < (int)(sizeof booting / sizeof booting[0]) && pipe2(boot_pipe, O_CLOEXEC) < 0) boot_pipe[0] = boot_pipe[1] = -1;
    pid_t pid = fork();
    if (pid < 0) {
      int saved = errno;
      if (boot_pipe[0] >= 0) { close(boot_pipe[0]); close(boot_pipe[1]); }
      emit("{\"event\":\"error\",\"phase\":%d,\"step\":\"fork_monitor\",\"errno\":%d,\"message\":\"fork: %s\"}", EXIT_CLONE, saved, strerror(saved));
      continue;
    }
    if (pid == 0) {
      signal(SIGCHLD, SIG_DFL);
      for (int i = 0; i < n_monitors; i++) close(monitors[i]);
      for (int i = 0; i < n_netns; i++) close(netns_pool[i]);
      for (int i = 0; i < n_booting; i++) close(booting[i]);
      if (home_netns >= 0) close(home_netns);
      close(0);
      pooled_netns = netns;
      if (boot_pipe[0] >= 0) close(boot_pipe[0]);
      booting_fd = boot_pipe[1];
      _exit(run_monitor(n, args));
    }
    if (netns >= 0) close(netns);
    if (boot_pipe[0] >= 0) {
      close(boot_pipe[1]);
      booting[n_booting++] = boot_pipe[0];
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0 && n_monitors < (int)(sizeof monitors / sizeof monitors[0])) monitors[n_monitors++] = pidfd;
    else if (pidfd >= 0) close(pidfd);
  }
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--server") == 0) {
    /* --server [--netns-pool N]: keep N network namespaces ready. */
    if (argc == 4 && strcmp(argv[2], "--netns-pool") == 0) netns_target = atoi(argv[3]);
    if (netns_target < 0 || netns_target > (int)(sizeof netns_pool / sizeof netns_pool[0])) netns_target = 0;
    /* The argument strings are contiguous: that whole area is our cmdline,
     * free to rewrite here (one-shot runs keep theirs: the config points into it). */
    cmdline_area = argv[0];
    cmdline_size = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) + 1 - argv[0]);
    prctl(PR_SET_NAME, "fnbox-zygote", 0, 0, 0);
    return serve_requests();
  }
  return run_monitor(argc, argv);
}
