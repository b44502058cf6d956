#!/usr/bin/env bash
# Sets everything up and boots kite's default guest with its serial console on this terminal:
# scripts/setup.sh (packages + build), the guest kernel (guest-firmware/linux/guest-kernel.sh:
# $KITE_GUEST_KERNEL, the cache, or a build from Debian's linux-source-6.1), the busybox
# initramfs, then `kite run`. The guest's /init gives you a shell; `poweroff -f` ends it, and
# Ctrl-A x quits kite at any time. Extra arguments go to `kite run`.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KITE_BUILD_DIR:-build}
scripts/setup.sh
# Fail before the (minutes-long) guest build when this host cannot run a VM at all.
if [[ ! -c /dev/kvm ]]; then
  echo "boot: this host has no /dev/kvm (a VM without nested virtualization?); kite needs" >&2
  echo "      KVM to boot a guest. The test suite still runs here: ./scripts/test.sh runs the" >&2
  echo "      KVM tests inside a nested VM (scripts/kvm-vm/)." >&2
  exit 1
fi
kernel=$(guest-firmware/linux/guest-kernel.sh)
initrd=$(guest-firmware/linux/build-initramfs.sh)
exec "$build/src/vmm/kite" run --kernel "$kernel" --initrd "$initrd" --memory 256M \
  --cmdline "console=ttyS0 reboot=k panic=-1 kite.shell=1" "$@"
