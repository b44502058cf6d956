#!/bin/bash
# B2 (BENCHMARKS.md): VMM memory overhead = RSS of the VMM process minus the guest RAM pages
# it has touched, read from /proc/PID/smaps while the guest runs. Guest: guest-firmware
# "serial_echo" (waits for serial input, so the VM stays up while we measure), 128 MiB.
# kite vs QEMU -M microvm -accel kvm on the same PVH ELF, medians of several runs.
#
# Guest RAM is recognised as the mappings at least as large as the guest's memory (128 MiB);
# everything else is the VMM's own (code, heap, stacks, libraries, device buffers).
#
# Usage: bench/b2-memory-overhead.sh [runs]    (default 5)
# Env:   BUILD, KITE, GUEST (serial_echo.elf), QEMU, SETTLE (seconds after "ready", default 1)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$repo/build}
kite=${KITE:-$build/src/vmm/kite}
guest=${GUEST:-$build/guest-firmware/bin/serial_echo.elf}
qemu=${QEMU:-qemu-system-x86_64}
runs=${1:-5}
settle=${SETTLE:-1}
mem_mib=128
die() { echo "b2: $*" >&2; exit 1; }

[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here: B2 needs KVM"
[[ -x "$kite" ]] || die "no kite binary at $kite (set BUILD or KITE)"
[[ -f "$guest" ]] || die "no guest at $guest (build the kite_guest_firmware target)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# overhead_kib <pid>: total Rss minus the Rss of mappings >= the guest's RAM size.
overhead_kib() {
  awk -v ram_kib=$((mem_mib * 1024)) '
    /^[0-9a-f]+-[0-9a-f]+ / { big = 0 }
    /^Size:/ { big = ($2 >= ram_kib) }
    /^Rss:/ { total += $2; if (big) guest += $2 }
    END { print total - guest }' "/proc/$1/smaps"
}

# measure <name> <command...>: starts the VMM with stdin on a FIFO, waits for the guest's
# "ready" line, samples smaps, then sends 'q' so the guest powers off. Prints KiB.
measure() {
  local name=$1
  shift
  local fifo=$work/in out=$work/out pid kib
  rm -f "$fifo"
  mkfifo "$fifo"
  "$@" <"$fifo" >"$out" 2>&1 &
  pid=$!
  exec 3>"$fifo"
  for ((i = 0; i < 600; i++)); do
    grep -q "serial_echo: ready" "$out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; die "$name exited before the guest was ready"; }
    sleep 0.1
  done
  grep -q "serial_echo: ready" "$out" || { kill "$pid"; die "$name: guest never got ready"; }
  sleep "$settle"
  kib=$(overhead_kib "$pid")
  printf 'q' >&3
  exec 3>&-
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$kib"
}

median() { sort -n | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }

kite_cmd=("$kite" run --kernel "$guest" --memory ${mem_mib}M --serial stdio)
qemu_cmd=("$qemu" -M microvm,x-option-roms=off,rtc=off -accel kvm -m ${mem_mib}M
  -nodefaults -no-user-config -nographic -serial stdio -kernel "$guest"
  -device isa-debug-exit,iobase=0xf4,iosize=4)

kite_kib=$(for ((r = 0; r < runs; r++)); do measure kite "${kite_cmd[@]}"; done | median)
qemu_kib=$(for ((r = 0; r < runs; r++)); do measure qemu "${qemu_cmd[@]}"; done | median)

awk -v k="$kite_kib" -v q="$qemu_kib" -v n="$runs" -v m="$mem_mib" 'BEGIN {
  printf "B2 VMM memory overhead (serial_echo guest, %d MiB, %d runs, medians)\n", m, n
  printf "  kite  %8.2f MiB   (target <= 2 MiB)\n", k / 1024
  printf "  qemu  %8.2f MiB   (microvm, KVM)\n", q / 1024
  printf "  ratio %8.1fx      qemu/kite\n", q / k }'
