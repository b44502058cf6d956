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
# A host without /dev/kvm (a VM without nested virtualization, like the machines kite is
# developed on), or whose /dev/kvm emulates guest code (no vmx/svm flag: minutes to boot, no
# userspace), runs kite inside the nested VM of the test suite (scripts/kvm-vm/, QEMU with
# emulated AMD SVM), with this terminal as kite's console; decided before the (minutes-long)
# guest build. Without /dev/kvm and without that VM, it is refused; an emulating /dev/kvm is
# used as it is when the nested VM cannot run (KITE_NO_KVM_VM=1 asks for that).
source scripts/lib/kvm-host.sh
kvm_host=$(kvm_host_kind)
run=("$build/src/vmm/kite")
if [[ $kvm_host != hardware ]]; then
  if [[ ${KITE_NO_KVM_VM:-0} == 1 ]] || ! scripts/kvm-vm/setup.sh; then
    if [[ $kvm_host == none ]]; then
      echo "boot: this host has no /dev/kvm and cannot run the nested VM (scripts/kvm-vm/);" >&2
      echo "      kite needs KVM to boot a guest." >&2
      exit 1
    fi
    echo "boot: this host's /dev/kvm emulates guest code (no vmx/svm flag): the boot takes" >&2
    echo "      minutes and the guest's userspace cannot run (scripts/kvm-vm/README.md)" >&2
  else
    if [[ $kvm_host == emulating ]]; then
      echo "boot: this host's /dev/kvm emulates guest code (no vmx/svm flag): running kite"         "inside a nested VM instead, which runs it hundreds of times faster (scripts/kvm-vm/;"         "~30 s to start)" >&2
    else
      echo "boot: no /dev/kvm here: running kite inside a nested VM (scripts/kvm-vm/; ~30 s to start)" >&2
    fi
  run=(env KITE_VM_INTERACTIVE=1 KITE_VM_TIMEOUT="${KITE_VM_TIMEOUT:-86400}"
    scripts/kvm-vm/run-in-kvm-vm.sh "$PWD" -- "$PWD/$build/src/vmm/kite")
  fi
fi
kernel=$(guest-firmware/linux/guest-kernel.sh)
initrd=$(guest-firmware/linux/build-initramfs.sh)
exec "${run[@]}" run --kernel "$kernel" --initrd "$initrd" --memory 256M \
  --cmdline "console=ttyS0 reboot=k panic=-1 kite.shell=1" "$@"
