#!/bin/bash
# B2 (BENCHMARKS.md): VMM memory overhead = RSS of the VMM process minus the guest RAM pages
# it has touched, read from /proc/PID/smaps while the guest runs. Guest: guest-firmware
# "serial_echo" (waits for serial input, so the VM stays up while we measure), 128 MiB.
# kite vs QEMU -M microvm -accel kvm on the same PVH ELF, medians of several runs.
#
# Guest RAM is recognised as the mappings at least as large as the guest's memory (128 MiB);
# everything else is the VMM's own (code, heap, stacks, libraries, device buffers).
#
# A second table does the same with guest RAM from 2 MiB huge pages (kite --memory
# 128M,hugepages=2M; QEMU memory-backend-memfd,hugetlb=on,hugetlbsize=2M): hugetlb pages are not
# in Rss, so the overhead is the VMM's own pages either way, and the table also shows the
# hugetlb kB the guest's RAM took. The pages are added to the host's pool for the run (root)
# and taken back; without them the table says why it is missing (HUGEPAGES=0 leaves it out).
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

# hugetlb_kib <pid>: the huge pages the process maps (the guest's RAM when on huge pages).
hugetlb_kib() {
  awk '/^(Private|Shared)_Hugetlb:/ { t += $2 } END { print t + 0 }' "/proc/$1/smaps"
}

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
  [[ -z ${HUGE_LOG:-} ]] || hugetlb_kib "$pid" >>"$HUGE_LOG"
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

# --- the same with guest RAM from 2 MiB huge pages ---
[[ ${HUGEPAGES:-1} == 1 ]] || exit 0
pool=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
need=$((mem_mib / 2 + 8))
orig=$(cat "$pool" 2>/dev/null || echo 0)
if ! { echo $((orig + need)) >"$pool"; } 2>/dev/null || (($(cat "$pool") < orig + need)); then
  echo "B2 with huge pages: not measured (cannot add $need pages to $pool: root needed)"
  exit 0
fi
trap 'echo "$orig" >"$pool"; rm -rf "$work"' EXIT
HUGE_LOG=$work/huge
kite_cmd=("$kite" run --kernel "$guest" --memory ${mem_mib}M,hugepages=2M --serial stdio)
qemu_cmd=("$qemu" -M microvm,x-option-roms=off,rtc=off,memory-backend=mem -accel kvm
  -m ${mem_mib}M -object memory-backend-memfd,id=mem,size=${mem_mib}M,hugetlb=on,hugetlbsize=2M
  -nodefaults -no-user-config -nographic -serial stdio -kernel "$guest"
  -device isa-debug-exit,iobase=0xf4,iosize=4)
: >"$HUGE_LOG"
kite_kib=$(for ((r = 0; r < runs; r++)); do measure kite "${kite_cmd[@]}"; done | median)
kite_huge=$(median <"$HUGE_LOG")
: >"$HUGE_LOG"
qemu_kib=$(for ((r = 0; r < runs; r++)); do measure qemu "${qemu_cmd[@]}"; done | median)
qemu_huge=$(median <"$HUGE_LOG")
awk -v k="$kite_kib" -v q="$qemu_kib" -v kh="$kite_huge" -v qh="$qemu_huge" -v n="$runs" \
  -v m="$mem_mib" 'BEGIN {
  printf "B2 with guest RAM on 2 MiB huge pages (%d MiB, %d runs, medians)\n", m, n
  printf "  kite  %8.2f MiB overhead   guest RAM on huge pages: %6.1f MiB\n", k / 1024, kh / 1024
  printf "  qemu  %8.2f MiB overhead   guest RAM on huge pages: %6.1f MiB\n", q / 1024, qh / 1024
  printf "  ratio %8.1fx      qemu/kite\n", q / k }'
