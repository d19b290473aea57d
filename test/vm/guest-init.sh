#!/bin/sh
# PID 1 of the test VM (busybox): mount the host's root read-only over 9p,
# put a tmpfs overlay on top so the project can write, mount a pure cgroup2
# hierarchy (nothing of v1; or with fnbox.cgroup=v1, v1 only), switch into it (a real root: a chroot may not
# create user namespaces) and run the sandbox-core tests in a delegated
# child cgroup. The last line on the console is the verdict for the host.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay; do
  [ -f /modules/$module.ko ] && insmod /modules/$module.ko 2>/dev/null
done
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
PROJECT=$(arg fnbox.project)
TESTS=$(arg fnbox.tests | tr ',' ' ')
DEBUG=$(arg fnbox.debug)
CGROUP=$(arg fnbox.cgroup)
verdict() { echo "FNBOX-VM-RESULT $1"; sync; poweroff -f; }

mkdir -p /host /rw /root
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host || verdict mount-9p-failed
mount -t tmpfs -o size=3g tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /root || verdict mount-overlay-failed
mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
# /tmp and /run stay on the overlay (writable already): the project itself may live under /tmp.
if [ "$CGROUP" = v1 ]; then
  # Pure v1, as systemd.unified_cgroup_hierarchy=0 without the hybrid cgroup2 mount.
  mount -t tmpfs -o mode=755 cgroup /root/sys/fs/cgroup
  for controllers in memory cpu,cpuacct pids freezer; do
    mkdir -p /root/sys/fs/cgroup/$controllers
    mount -t cgroup -o $controllers cgroup /root/sys/fs/cgroup/$controllers || verdict mount-cgroup-v1-failed
  done
  echo "guest: kernel $(uname -r); cgroup v1 only: $(ls /root/sys/fs/cgroup | tr '\n' ' ')"
  DELEGATE="true"
else
  mount -t cgroup2 -o nsdelegate cgroup2 /root/sys/fs/cgroup || verdict mount-cgroup2-failed
  echo "guest: kernel $(uname -r); cgroup2 controllers: $(cat /root/sys/fs/cgroup/cgroup.controllers)"
  # A delegated cgroup for the run, as systemd would give a service: the
  # gateway must respect the no-internal-processes rule inside it.
  DELEGATE="echo '+cpu +memory +pids' > /sys/fs/cgroup/cgroup.subtree_control && mkdir /sys/fs/cgroup/fnbox-ci && echo \$\$ > /sys/fs/cgroup/fnbox-ci/cgroup.procs"
fi

if [ -n "$DEBUG" ]; then
  # fnbox.debug=<script>: run one script of the project instead of the tests.
  RUN="$DELEGATE && \$(command -v node) $DEBUG; dmesg | tail -5"
else
  # An absolute argv[0]: node falls back to it for process.execPath.
  RUN="$DELEGATE && export HOME=/tmp FNBOX_TEST_CYCLES=100 FNBOX_TEST_IMAGE_DIR='$PROJECT/.fnbox/test-images' CI=1 && \$(command -v node) node_modules/vitest/vitest.mjs run --config test/vitest.config.ts --project main --no-file-parallelism $TESTS"
fi
exec switch_root /root /bin/sh -c "cd '$PROJECT' && { $RUN; }; echo FNBOX-VM-RESULT \$?; sync; busybox poweroff -f"
