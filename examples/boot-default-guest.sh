#!/bin/bash
# Boots the default guest kernel with kite: the kernel guest-firmware/linux/guest-kernel.sh
# finds (without building one), else ../shared/guest/vmlinux next to the repository.
#   examples/boot-default-guest.sh [BUILD_DIR] [extra kite run options...]
# BUILD_DIR defaults to ./build. Quit with Ctrl-A x.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
build=${1:-$repo/build}
[[ $# -gt 0 ]] && shift
kite=$build/src/vmm/kite
[[ -x $kite ]] || { echo "boot-default-guest: no $kite; build the kite target first" >&2; exit 1; }

kernel=""
if [[ -x $repo/guest-firmware/linux/guest-kernel.sh ]]; then
  kernel=$("$repo/guest-firmware/linux/guest-kernel.sh" --no-build 2>/dev/null || true)
fi
if [[ -z $kernel ]]; then
  kernel=$repo/../shared/guest/vmlinux
fi
[[ -f $kernel ]] || { echo "boot-default-guest: no guest kernel found ($kernel)" >&2; exit 1; }

exec "$kite" run --kernel "$kernel" --memory 512M --cmdline "console=ttyS0 reboot=k panic=1" "$@"
