#!/bin/bash
# make-rootfs.sh OUT SIZE_MIB [userspace|counter]: builds a raw ext4 image for the e2e tests
# (tests/e2e/virtio_e2e_test.cc, snapshot_e2e_test.cc) with mkfs.ext4 -d. The file system holds
# an empty /dev (the kernel mounts devtmpfs there, so init gets /dev/console). With "userspace"
# it also holds Debian's static busybox and an /init script that writes /hello, syncs, prints a
# marker line and powers off; without a variant there is no init at all, so the kernel panics
# once root is mounted (the kernel-only variant for emulated-KVM hosts, MACHINE.md).
# "counter" (the snapshot tests): an /init that appends 1, 2, 3, ... to /counter (synced), and
# prints for each "kite-counter: N net up|down time <guest epoch s> uuid <fresh random uuid>
# size <vda's 512-byte sectors> carrier <eth0's carrier, 0|1>",
# every 0.2 s, until N reaches kite.limit= from the kernel command line; then it remounts / read-
# only and powers off. busybox acpid turns the ACPI power button (system_powerdown) into the
# same clean power-off, where the kernel has evdev. Beside it runs /bin/hotplug-watch
# (tests/e2e/hotplug-watch.sh): it uses hot-added disks and NICs and reports them.
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
elif [[ "$variant" == counter ]]; then
  busybox=/bin/busybox
  [[ -x "$busybox" ]] || die "$busybox missing (install busybox-static)"
  readelf -l "$busybox" 2>/dev/null | grep -q INTERP && die "$busybox is not static"
  mkdir -p "$staging/bin" "$staging/proc" "$staging/sys" "$staging/etc/acpi/PWRF"
  cp "$busybox" "$staging/bin/busybox"
  cat >"$staging/bin/clean-poweroff" <<'EOF'
#!/bin/busybox sh
/bin/busybox echo "kite-counter: powering off ($1)"
/bin/busybox sync
/bin/busybox mount -o remount,ro /
/bin/busybox poweroff -f
EOF
  cat >"$staging/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/busybox sh
/bin/clean-poweroff "power button"
EOF
  cat >"$staging/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
limit=$(sed -n 's/.*kite\.limit=\([0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$limit" ] || limit=100
echo "kite-init: input devices: $(grep '^N:' /proc/bus/input/devices 2>&1 | tr '\n' ' ')"
# -d: in the foreground, logging each event on the console.
[ -e /dev/input/event0 ] && { acpid -d -c /etc/acpi & echo "kite-init: acpid started"; }
/bin/hotplug-watch &
i=0
while [ "$i" -lt "$limit" ]; do
  i=$((i + 1))
  echo "$i" >>/counter
  sync
  if ping -c 1 -W 1 10.0.2.2 >/dev/null 2>&1; then net=up; else net=down; fi
  size=$(cat /sys/block/vda/size)
  carrier=$(cat /sys/class/net/eth0/carrier 2>/dev/null || echo x)
  echo "kite-counter: $i net $net time $(date +%s) uuid $(cat /proc/sys/kernel/random/uuid)" \
    "size $size carrier $carrier"
  sleep 0.2
done
/bin/clean-poweroff "limit $limit"
EOF
  cp "$(dirname "$0")/hotplug-watch.sh" "$staging/bin/hotplug-watch"
  printf '%s\n' '#!/bin/busybox sh' \
    'case "$1" in bound|renew) ifconfig "$interface" "$ip" netmask "$subnet" ;; esac' \
    >"$staging/bin/dhcp-script"
  mkdir -p "$staging/mnt"
  chmod 0755 "$staging/init" "$staging/bin/clean-poweroff" "$staging/etc/acpi/PWRF/00000080" \
    "$staging/bin/hotplug-watch" "$staging/bin/dhcp-script"
elif [[ -n "$variant" ]]; then
  die "unknown variant '$variant'"
fi

rm -f "$out"
truncate -s "${size_mib}M" "$out"
mkfs.ext4 -F -q -d "$staging" "$out"
