#!/usr/bin/env bash
# Installs (idempotently) the Debian 12 packages run-in-kvm-vm.sh needs: QEMU (TCG,
# 9p), the distribution kernel whose kvm-amd / 9p / overlay modules the L1 VM loads,
# busybox for the VM's initramfs, and the tools to pack it.
set -euo pipefail
packages=(qemu-system-x86 linux-image-amd64 busybox-static cpio kmod xz-utils gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "kvm-vm setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi
ls /lib/modules/*/kernel/arch/x86/kvm/kvm-amd.ko >/dev/null
