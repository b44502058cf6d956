#!/usr/bin/env bash
# B9: block jobs on a running VM (issue "Hotplug and live disk operations" §4): an active
# block-commit of a qcow2 overlay holding SIZE of data into its qcow2 base, kite against QEMU
# (-M microvm -accel kvm, same guest, same images) and `qemu-img commit` on a copy, in the
# same run; and the guest's disk request rate idle and during kite's commit.
#
#   bench/b9-block-jobs.sh [BUILD_DIR]   (default: build; needs BUILD_DIR/src/vmm/kite, the
#                                         guest firmware, qemu-img, qemu-io,
#                                         qemu-system-x86_64 and /dev/kvm)
#
# Images (in B9_DIR, default ${TMPDIR:-/tmp}): base.qcow2 of SIZE (default 256M: the nested VM
# of scripts/kvm-vm has 2 GiB of RAM and /tmp is tmpfs; use 1G on a real host) and
# top.qcow2 over it with all SIZE written by qemu-io (pattern 0x5a). Each VMM gets fresh copies.
# Guest: guest-firmware "busy" on top.qcow2 (4 KiB write + read back, one at a time).
# Timed, per VMM: from `block-commit` until query-block-jobs says ready (the bulk copy), then
# `block-job-complete` until the job is gone (the pivot). MB/s = SIZE / copy time. The guest's
# requests/s and request latency p99 (busy prints one per 1024 requests) over the 3 s before the
# job and over the copy show what the job costs the guest.
set -euo pipefail

BUILD=${1:-build}
KITE=${KITE:-$BUILD/src/vmm/kite}
GUEST=${GUEST:-$BUILD/guest-firmware/bin/busy.elf}
QEMU=${QEMU:-qemu-system-x86_64}
SIZE=${SIZE:-256M}
DIR=${B9_DIR:-${TMPDIR:-/tmp}/kite-b9.$$}
die() { echo "b9: $*" >&2; exit 1; }

[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here: B9 needs KVM"
[[ -x $KITE ]] || die "no kite binary at $KITE (build it first)"
[[ -f $GUEST ]] || die "no guest at $GUEST (build the kite_guest_firmware target)"
for tool in "$QEMU" qemu-img qemu-io; do command -v "$tool" >/dev/null || die "$tool not found"; done
mkdir -p "$DIR"
SOCKS=$(mktemp -d)  # sockets cannot live on every file system B9_DIR may be on
trap 'rm -rf "$DIR" "$SOCKS"' EXIT

qemu-img create -q -f qcow2 "$DIR/base.qcow2" "$SIZE"
qemu-img create -q -f qcow2 -b "$DIR/base.qcow2" -F qcow2 "$DIR/top0.qcow2" "$SIZE"
qemu-io -f qcow2 -c "write -P 0x5a 0 $SIZE" "$DIR/top0.qcow2" >/dev/null
cp "$DIR/base.qcow2" "$DIR/base0.qcow2"
bytes=$(qemu-img info --output=json "$DIR/top0.qcow2" |
  sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p' | head -1)
fresh() { cp --sparse=always "$DIR/base0.qcow2" "$DIR/base.qcow2"; cp "$DIR/top0.qcow2" "$DIR/top.qcow2"; }
now() { date +%s%N; }
requests() { sed -n 's/^busy: \([0-9]*\) requests.*/\1/p' "$1" 2>/dev/null | tail -1; }
ctl() { "$KITE" ctl "$@"; }
lines() { wc -l <"$1"; }
median() {
  sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
# p99 FILE FROM TO: the median of the guest's per-window p99 latencies (TSC cycles) printed on
# lines FROM+1..TO.
p99() { sed -n "$(($2 + 1)),$3p" "$1" | sed -n 's/.*p99_cycles \([0-9]*\).*/\1/p' | median; }

# jobs_state SOCK: "none", "ready" or "running".
jobs_state() {
  local out
  out=$(ctl "$1" query-block-jobs)
  if [[ $out == "[]" ]]; then echo none
  elif grep -q '"ready": true' <<<"$out"; then echo ready
  else echo running; fi
}

# run_vmm VMM: prints "copy_ms=.. pivot_ms=.. idle_rps=.. job_rps=..".
run_vmm() {
  local vmm=$1 sock=$SOCKS/$1.sock serial=$DIR/$1.serial pid device t0 t1 t2 n0 n1 n2 l0 l1 l2
  fresh
  rm -f "$sock" "$serial"
  if [[ $vmm == kite ]]; then
    device=vda
    "$KITE" run --kernel "$GUEST" --memory 128M --serial "file:$serial" \
      --disk "path=$DIR/top.qcow2,format=qcow2" --api-sock "$sock" </dev/null >/dev/null \
      2>"$serial.err" &
  else
    device=d0
    "$QEMU" -M microvm,x-option-roms=off,rtc=off -accel kvm -m 128M -nodefaults \
      -no-user-config -display none -kernel "$GUEST" -serial "file:$serial" \
      -global virtio-mmio.force-legacy=false -drive "id=d0,file=$DIR/top.qcow2,format=qcow2,if=none" \
      -device virtio-blk-device,drive=d0 -qmp "unix:$sock,server=on,wait=off" \
      </dev/null >/dev/null 2>"$serial.err" &
  fi
  pid=$!
  for ((i = 0; i < 600; i++)); do
    [[ -n $(requests "$serial") ]] && break
    kill -0 "$pid" 2>/dev/null || die "$vmm ended early: $(tail -c 600 "$serial" "$serial.err")"
    sleep 0.1
  done
  n0=$(requests "$serial") t0=$(now) l0=$(lines "$serial")
  sleep 3
  n1=$(requests "$serial") t1=$(now) l1=$(lines "$serial")
  local idle_rps=$(((n1 - n0) * 1000000000 / (t1 - t0))) idle_p99
  idle_p99=$(p99 "$serial" "$l0" "$l1")
  t0=$(now) n0=$(requests "$serial")
  ctl "$sock" block-commit device=$device job-id=j >/dev/null
  while [[ $(jobs_state "$sock") == running ]]; do sleep 0.05; done
  t1=$(now) n1=$(requests "$serial") l2=$(lines "$serial")
  ctl "$sock" block-job-complete device=j >/dev/null
  while [[ $(jobs_state "$sock") != none ]]; do sleep 0.05; done
  t2=$(now) n2=$(requests "$serial")
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  echo "copy_ms=$(((t1 - t0) / 1000000)) pivot_ms=$(((t2 - t1) / 1000000))" \
    "idle_rps=$idle_rps job_rps=$(((n1 - n0) * 1000000000 / (t1 - t0 + 1)))" \
    "idle_p99=$idle_p99 job_p99=$(p99 "$serial" "$l1" "$l2")"
}

field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p"; }
k=$(run_vmm kite)
q=$(run_vmm qemu)
fresh
t0=$(now)
qemu-img commit -q "$DIR/top.qcow2"
img_ms=$((($(now) - t0) / 1000000))

mbps() { awk -v b="$bytes" -v ms="$1" 'BEGIN { printf "%.1f", ms > 0 ? b / 1048576 / (ms / 1000) : 0 }'; }
printf 'B9 active block-commit of a %s overlay into its base (%s CPU(s) online)\n' "$SIZE" "$(nproc)"
printf '%-34s %12s %12s %12s\n' case kite qemu qemu-img
printf '%-34s %12s %12s %12s\n' "copy until READY (ms)" "$(field copy_ms <<<"$k")" \
  "$(field copy_ms <<<"$q")" "$img_ms"
printf '%-34s %12s %12s %12s\n' "  MB/s" "$(mbps "$(field copy_ms <<<"$k")")" \
  "$(mbps "$(field copy_ms <<<"$q")")" "$(mbps "$img_ms")"
printf '%-34s %12s %12s %12s\n' "complete until the job is gone (ms)" "$(field pivot_ms <<<"$k")" \
  "$(field pivot_ms <<<"$q")" -
printf '%-34s %12s %12s %12s\n' "guest requests/s idle" "$(field idle_rps <<<"$k")" \
  "$(field idle_rps <<<"$q")" -
printf '%-34s %12s %12s %12s\n' "guest requests/s during the copy" "$(field job_rps <<<"$k")" \
  "$(field job_rps <<<"$q")" -
printf '%-34s %12s %12s %12s\n' "guest request p99 idle (cycles)" "$(field idle_p99 <<<"$k")" \
  "$(field idle_p99 <<<"$q")" -
printf '%-34s %12s %12s %12s\n' "guest request p99 during the copy" "$(field job_p99 <<<"$k")" \
  "$(field job_p99 <<<"$q")" -
echo "(qemu-img commit: the same copy offline, no guest; targets: kite >= qemu and qemu-img;"
echo " the guest's p99 during the copy <= 3x its idle p99. p99: median of the guest's per-1024-"
echo " request 99th percentiles, in guest TSC cycles)"
