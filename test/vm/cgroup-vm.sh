#!/usr/bin/env bash
# Runs the sandbox-core tests on a kernel whose cgroups are pure v2 (or,
# with `v1`, pure v1: no cgroup2 mount at all): Debian's kernel under QEMU
# (software emulation: no nested virtualisation here), the host's root
# shared read-only over 9p, a busybox initramfs made here. Prints the
# guest's console; exits with the guest's test result.
#   bash test/vm/cgroup-vm.sh v2|v1 [test files…]   (default: test/sandbox)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${FNBOX_VM_DIR:-$ROOT/.fnbox/vm}
TIMEOUT=${FNBOX_VM_TIMEOUT:-1500}
MODE=${1:-v2}
[ "$MODE" = v1 ] || [ "$MODE" = v2 ] || { echo "vm: mode must be v1 or v2, got $MODE"; exit 2; }
shift || true
TESTS=${*:-test/sandbox}

need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
missing=()
need qemu-system-x86_64 qemu-system-x86
need busybox busybox-static
need cpio cpio
# Package lists: a fresh machine may have none yet.
apt-cache policy linux-image-amd64 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "vm: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x "$ROOT/build/fnbox-launcher" ] && [ -d "$ROOT/dist" ] || { echo "vm: build first (npm install)"; exit 2; }

# The kernel: whatever Debian's linux-image-amd64 points at, unpacked once.
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
version=${pkg#linux-image-}
kernel_dir=$WORK/kernel/$pkg
if [ ! -f "$kernel_dir/boot/vmlinuz-$version" ]; then
  mkdir -p "$WORK/dl" && (cd "$WORK/dl" && apt-get download "$pkg" 2>/dev/null)
  mkdir -p "$kernel_dir" && dpkg-deb -x "$WORK/dl/${pkg}_"*.deb "$kernel_dir"
fi
modules=$kernel_dir/lib/modules/$version/kernel

# The initramfs: busybox, the modules 9p and overlay need, our init.
initramfs=$WORK/initramfs
rm -rf "$initramfs" && mkdir -p "$initramfs/bin" "$initramfs/modules" "$initramfs"/{proc,sys,dev}
cp "$(command -v busybox)" "$initramfs/bin/busybox"
for applet in sh mount insmod mkdir sed tr cat echo uname switch_root poweroff sync; do ln -s busybox "$initramfs/bin/$applet"; done
for module in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay; do
  found=$(find "$modules" -name "$module.ko*" | head -1)
  [ -n "$found" ] || continue
  case "$found" in
    *.xz) xz -dc "$found" > "$initramfs/modules/$module.ko" ;;
    *.zst) zstd -dqc "$found" > "$initramfs/modules/$module.ko" ;;
    *) cp "$found" "$initramfs/modules/$module.ko" ;;
  esac
done
cp "$ROOT/test/vm/guest-init.sh" "$initramfs/init" && chmod +x "$initramfs/init"
(cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -1 > "$WORK/initramfs.cpio.gz")

echo "vm: booting $pkg under TCG with pure cgroup $MODE, running: $TESTS"
log=$WORK/console-$MODE.log
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 6144 -smp 2 -nographic -no-reboot \
  -kernel "$kernel_dir/boot/vmlinuz-$version" -initrd "$WORK/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet fnbox.project=$ROOT fnbox.tests=$(echo $TESTS | tr ' ' ',') fnbox.cgroup=$MODE ${FNBOX_VM_DEBUG:+fnbox.debug=$FNBOX_VM_DEBUG}" \
  -virtfs "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap" | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e
verdict=$(grep -a -o 'FNBOX-VM-RESULT [^[:space:]]*' "$log" | tail -1 | cut -d' ' -f2)
if [ -z "$verdict" ]; then
  echo "vm: no verdict from the guest (qemu exit $qemu_status; 124 = timed out after ${TIMEOUT}s)"
  exit 1
fi
echo "vm: guest tests exited with $verdict"
[ "$verdict" = 0 ]
