#!/usr/bin/env bash
# Builds kvm-smoke.c and runs it inside the L1 VM: proves /dev/kvm runs guest code
# there (real mode, long mode, irqchip, PIT, ioeventfd, irqfd) and prints timings.
#   smoke.sh [LOOP_ITERATIONS]      (default 10000000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/kite-kvm-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
cc -O2 -Wall -Wextra -o "$work/kvm-smoke" "$here/kvm-smoke.c"
cd "$work"
KITE_VM_TIMEOUT=${KITE_VM_TIMEOUT:-600} "$here/run-in-kvm-vm.sh" "$work" -- ./kvm-smoke "${1:-10000000}"
