#!/bin/bash
# make-rootfs.sh OUT SIZE_MIB [userspace]: builds a raw ext4 image for the virtio e2e tests
# (tests/e2e/virtio_e2e_test.cc) with mkfs.ext4 -d. The file system holds an empty /dev (the
# kernel mounts devtmpfs there, so init gets /dev/console). With "userspace" it also holds
# Debian's static busybox and an /init script that writes /hello, syncs, prints a marker line
# and powers off; without it there is no init at all, so the kernel panics once root is mounted
# (the kernel-only variant for emulated-KVM hosts, MACHINE.md).
set -euo pipefail
die() { echo "make-rootfs: error: $*" >&2; exit 1; }

[[ $# -ge 2 ]] || die "usage: make-rootfs.sh OUT SIZE_MIB [userspace]"
out=$1
size_mib=$2
variant=${3:-}
export PATH="$PATH:/usr/sbin:/sbin"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (install e2fsprogs)"

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/dev"
if [[ "$variant" == userspace ]]; then
  busybox=/bin/busybox
  [[ -x "$busybox" ]] || die "$busybox missing (install busybox-static)"
  readelf -l "$busybox" 2>/dev/null | grep -q INTERP && die "$busybox is not static"
  mkdir -p "$staging/bin"
  cp "$busybox" "$staging/bin/busybox"
  cat >"$staging/init" <<'EOF'
#!/bin/busybox sh
echo "kite-e2e: hello from the guest" >/hello
/bin/busybox sync
echo "kite-e2e: wrote /hello"
/bin/busybox poweroff -f
EOF
  chmod 0755 "$staging/init"
elif [[ -n "$variant" ]]; then
  die "unknown variant '$variant'"
fi

rm -f "$out"
truncate -s "${size_mib}M" "$out"
mkfs.ext4 -F -q -d "$staging" "$out"
