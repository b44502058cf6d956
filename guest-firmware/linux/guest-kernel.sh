#!/bin/bash
# guest-kernel.sh: prints the path of a usable guest vmlinux for kite's e2e tests and B3:
#   1. $KITE_GUEST_KERNEL when set (must be a file);
#   2. a cached build of this kernel-fragment.config (any kernel version) under
#      ${KITE_CACHE_DIR:-$HOME/.cache/kite}/guest/;
#   3. otherwise builds it with build-kernel.sh (minutes), unless --no-build is given, in which
#      case it exits 1 with a message on stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root="${KITE_CACHE_DIR:-$HOME/.cache/kite}/guest"
no_build=0
[[ "${1:-}" == "--no-build" ]] && no_build=1

if [[ -n "${KITE_GUEST_KERNEL:-}" ]]; then
  [[ -f "$KITE_GUEST_KERNEL" ]] || { echo "guest-kernel: KITE_GUEST_KERNEL=$KITE_GUEST_KERNEL is not a file" >&2; exit 1; }
  echo "$KITE_GUEST_KERNEL"
  exit 0
fi

for config in "$cache_root"/*/kernel-fragment.config; do
  [[ -f "$config" ]] || continue
  dir=$(dirname "$config")
  if cmp -s "$config" "$here/kernel-fragment.config" && [[ -f "$dir/vmlinux" ]]; then
    echo "$dir/vmlinux"
    exit 0
  fi
done

if ((no_build)); then
  echo "guest-kernel: no cached guest kernel in $cache_root (run $here/build-kernel.sh)" >&2
  exit 1
fi
exec "$here/build-kernel.sh"
