#!/usr/bin/env bash
# B8 (shared/BENCHMARKS.md): the QMP control socket while the guest does disk I/O, kite's
# --api-sock against QEMU's -qmp (-M microvm -accel kvm, same guest and disk) in the same run.
#
#   bench/b8-control-socket.sh [BUILD_DIR]   (default: build; needs BUILD_DIR/src/vmm/kite,
#                                             BUILD_DIR/bench/b8_qmp_client, the guest
#                                             firmware, qemu-system-x86_64 and /dev/kvm)
#
# Guest: guest-firmware "busy" with a 64 MiB raw virtio-blk disk: it writes and reads back
# 4 KiB blocks in a loop, one request at a time, and prints "busy: <n> requests" every 1024.
# Once it has printed that line, bench/b8_qmp_client (see its header) connects, reads the
# greeting, negotiates (not timed), then
#   latency:    COUNT (10,000) sequential `query-status` round trips on one connection, each
#               from just before the request is written to its reply parsed: p50 and p99;
#   throughput: 8 connections in 8 threads sending `query-status` back to back, one request
#               outstanding each, for SECONDS (3): replies per second, all together. QEMU
#               serves one client per QMP socket, so it gets 8 `-qmp` sockets (one monitor
#               each, one connection each); kite serves all 8 on its one --api-sock.
# The guest's own request rate over the same time is shown too (its "requests" lines), so
# the figures are known to have been taken under I/O. Medians of RUNS runs (default 5), kite
# and QEMU alternating, each run in a fresh VM. Files in B8_DIR (default ${TMPDIR:-/tmp}).
# Targets: p99 <= 1 ms; >= 20k requests/s.
set -euo pipefail

BUILD=${1:-build}
KITE=${KITE:-$BUILD/src/vmm/kite}
B8=${B8_BIN:-$BUILD/bench/b8_qmp_client}
GUEST=${GUEST:-$BUILD/guest-firmware/bin/busy.elf}
QEMU=${QEMU:-qemu-system-x86_64}
RUNS=${RUNS:-5}
COUNT=${COUNT:-10000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
DIR=${B8_DIR:-${TMPDIR:-/tmp}/kite-b8.$$}
die() { echo "b8: $*" >&2; exit 1; }

[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here: B8 needs KVM"
[[ -x $KITE ]] || die "no kite binary at $KITE (build it first)"
[[ -x $B8 ]] || die "b8_qmp_client not found at $B8 (build it first)"
[[ -f $GUEST ]] || die "no guest at $GUEST (build the kite_guest_firmware target)"
command -v "$QEMU" >/dev/null || die "$QEMU not found"
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
disk=$DIR/disk.raw
truncate -s 64M "$disk"

# requests FILE: the guest's request count so far (its last "busy: <n> requests" line).
requests() { sed -n 's/^busy: \([0-9]*\) requests.*/\1/p' "$1" 2>/dev/null | tail -1; }

# run_once VMM: boots the guest with its disk, waits for I/O, runs the client, stops the VMM.
# Prints the client's line plus " guest_rps=..".
run_once() {
  local vmm=$1 sock=$DIR/$1.sock serial=$DIR/$1.serial pid line n0 n1 t0 t1 socks=() qmp=()
  rm -f "$DIR"/*.sock "$serial"
  if [[ $vmm == kite ]]; then
    socks=("$sock")
    "$KITE" run --kernel "$GUEST" --memory 128M --serial "file:$serial" \
      --disk "path=$disk,format=raw" --api-sock "$sock" </dev/null >/dev/null 2>"$serial.err" &
  else
    for i in 0 1 2 3 4 5 6 7; do
      socks+=("$DIR/qemu$i.sock")
      qmp+=(-qmp "unix:$DIR/qemu$i.sock,server=on,wait=off")
    done
    "$QEMU" -M microvm,x-option-roms=off,rtc=off -accel kvm -m 128M -nodefaults \
      -no-user-config -display none -kernel "$GUEST" -serial "file:$serial" \
      -global virtio-mmio.force-legacy=false -drive "id=d0,file=$disk,format=raw,if=none" \
      -device virtio-blk-device,drive=d0 "${qmp[@]}" \
      </dev/null >/dev/null 2>"$serial.err" &
  fi
  pid=$!
  for ((i = 0; i < 600; i++)); do
    [[ -n $(requests "$serial") ]] && break
    kill -0 "$pid" 2>/dev/null || die "$vmm ended early: $(tail -c 500 "$serial" "$serial.err")"
    sleep 0.1
  done
  [[ -n $(requests "$serial") ]] ||
    { kill -KILL "$pid"; die "$vmm: the guest did no I/O in 60 s"; }
  n0=$(requests "$serial") t0=$(date +%s%N)
  line=$("$B8" "${socks[@]}" --count "$COUNT" --clients 8 --seconds "$SECONDS_PER_RUN") ||
    { kill -KILL "$pid"; die "$vmm: client failed"; }
  n1=$(requests "$serial") t1=$(date +%s%N)
  grep -q FAIL "$serial" && { kill -KILL "$pid"; die "$vmm: guest: $(grep FAIL "$serial")"; }
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$line guest_rps=$(((n1 - n0) * 1000000000 / (t1 - t0)))"
}

median() {
  sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" | median; }

kite_out=() qemu_out=()
for ((r = 0; r < RUNS; r++)); do
  kite_out+=("$(run_once kite)")
  qemu_out+=("$(run_once qemu)")
done
declare -A k q
for f in p50_us p99_us max_us rps guest_rps; do
  k[$f]=$(printf '%s\n' "${kite_out[@]}" | field "$f")
  q[$f]=$(printf '%s\n' "${qemu_out[@]}" | field "$f")
done

printf 'B8 control socket, query-status under guest disk I/O (medians of %d runs; %s CPU(s) online)\n' \
  "$RUNS" "$(nproc)"
printf '%-36s %12s %12s %10s\n' case kite qemu qemu/kite
row() {
  awk -v n="$1" -v k="$2" -v q="$3" 'BEGIN { printf "%-36s %12.1f %12.1f %9.2fx\n", n, k, q, q / k }'
}
row "round trip p50 (us, $COUNT sequential)" "${k[p50_us]}" "${q[p50_us]}"
row "round trip p99 (us)" "${k[p99_us]}" "${q[p99_us]}"
row "round trip max (us)" "${k[max_us]}" "${q[max_us]}"
row "requests/s, 8 clients, ${SECONDS_PER_RUN}s" "${k[rps]}" "${q[rps]}"
row "  guest disk requests/s meanwhile" "${k[guest_rps]}" "${q[guest_rps]}"
echo "(requests/s: qemu/kite < 1 means kite served more)"
echo "targets: p99 <= 1000 us; >= 20000 requests/s"
