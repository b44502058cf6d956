#!/bin/bash
# B1 (BENCHMARKS.md): start-to-exit wall time of a tiny guest that prints one line and powers
# off (guest-firmware "hello", PVH ELF). kite run vs QEMU -M microvm -accel kvm on the same
# ELF (ending through isa-debug-exit), measured in the same run; medians and the ratio.
#
# Usage: bench/b1-start-to-exit.sh [runs]      (default 10, at least 5)
# Env:   BUILD=<build dir> (default <repo>/build), KITE=<kite binary>, GUEST=<hello.elf>,
#        QEMU=<qemu-system-x86_64>, RUN_TIMEOUT=<s per run, default 30>. Uses hyperfine when installed, else a timed loop.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$repo/build}
kite=${KITE:-$build/src/vmm/kite}
guest=${GUEST:-$build/guest-firmware/bin/hello.elf}
qemu=${QEMU:-qemu-system-x86_64}
runs=${1:-10}
run_timeout=${RUN_TIMEOUT:-30}
die() { echo "b1: $*" >&2; exit 1; }

((runs >= 5)) || die "at least 5 runs (BENCHMARKS.md)"
[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here: B1 needs KVM"
[[ -x "$kite" ]] || die "no kite binary at $kite (set BUILD or KITE)"
[[ -f "$guest" ]] || die "no guest at $guest (build the kite_guest_firmware target)"
command -v "$qemu" >/dev/null || die "$qemu not found"

kite_cmd=("$kite" run --kernel "$guest" --memory 128M --serial stdio)
qemu_cmd=("$qemu" -M microvm,x-option-roms=off,rtc=off -accel kvm -m 128M
  -nodefaults -no-user-config -nographic -serial stdio -kernel "$guest"
  -device isa-debug-exit,iobase=0xf4,iosize=4)

# Sanity: both print the guest's line and end the way the guest asked.
out=$(timeout "$run_timeout" "${kite_cmd[@]}" </dev/null) || die "kite run failed (status $?)"
grep -q "hello: kite guest is alive" <<<"$out" || die "kite: guest line missing: $out"
set +e
out=$(timeout "$run_timeout" "${qemu_cmd[@]}" </dev/null 2>&1)
status=$?
set -e
[[ $status -eq 1 ]] || die "qemu ended with status $status (want 1 from isa-debug-exit): $out"

# median_ms <command...>: runs it $runs times, prints the median wall time in ms. A run that
# hangs is killed after $run_timeout s and reported (it still counts, at its killed time).
median_ms() {
  local times=() t0 t1 rc
  for ((i = 0; i < runs; i++)); do
    t0=$(date +%s%N)
    rc=0
    timeout "$run_timeout" "$@" </dev/null >/dev/null 2>&1 || rc=$?
    ((rc != 124)) || echo "b1: $(basename "$1") run $i hung, killed after ${run_timeout}s" >&2
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {
    m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f\n", m / 1000 }'
}

if command -v hyperfine >/dev/null; then
  json=$(mktemp)
  trap 'rm -f "$json"' EXIT
  hyperfine -N --warmup 2 --runs "$runs" --ignore-failure --export-json "$json" \
    "$(printf '%q ' "${kite_cmd[@]}")" "$(printf '%q ' "${qemu_cmd[@]}")" >&2
  read -r kite_ms qemu_ms < <(python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))["results"]; print(r[0]["median"]*1e3, r[1]["median"]*1e3)' "$json")
else
  kite_ms=$(median_ms "${kite_cmd[@]}")
  qemu_ms=$(median_ms "${qemu_cmd[@]}")
fi

awk -v k="$kite_ms" -v q="$qemu_ms" -v n="$runs" 'BEGIN {
  printf "B1 start-to-exit (hello guest, %d runs, medians)\n", n
  printf "  kite  %8.2f ms   (target <= 5 ms)\n", k
  printf "  qemu  %8.2f ms   (microvm, KVM)\n", q
  printf "  ratio %8.1fx     qemu/kite (target >= 10x)\n", q / k }'
