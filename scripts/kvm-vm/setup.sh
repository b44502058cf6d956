#!/usr/bin/env bash
# Installs (idempotently) the Debian 12 packages run-in-kvm-vm.sh needs: QEMU (TCG,
# 9p), the distribution kernel whose kvm-amd / 9p / overlay modules the L1 VM loads,
# busybox for the VM's initramfs, and the tools to pack it.
set -euo pipefail
packages=(qemu-system-x86 linux-image-amd64 busybox-static cpio kmod xz-utils gcc libc6-dev)
source "$(dirname "$0")/../lib/apt.sh"
apt_install_missing "${packages[@]}"
ls /lib/modules/*/kernel/arch/x86/kvm/kvm-amd.ko >/dev/null
