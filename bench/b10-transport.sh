#!/bin/bash
# B10: virtio-mmio against virtio-pci as the guest sees them, and hotplug latency.
#
#   bench/b10-transport.sh [runs]      (default 3; needs a /dev/kvm that runs guest userspace:
#                                       hardware or the nested VM of scripts/kvm-vm)
# Env: BUILD, KITE, KITE_GUEST_KERNEL (else guest-firmware/linux/guest-kernel.sh)
#
# Per transport, kite's Linux guest (1 vCPU, 256 MiB, one 256 MiB raw disk, a user NIC, rng)
# runs guest-firmware/linux/tests/transport-bench: wall time from `kite run` to the
# initramfs's first line; 1 MiB direct reads of the whole disk (MiB/s); 20000 4 KiB direct
# reads one at a time (requests/s: each a kick, the host I/O and an interrupt); the average
# ping of the NAT gateway. Medians of `runs`.
# Hotplug (pci): device_add of a qcow2 disk until the guest has /sys/block/vdb (its
# hotplug-wait test polls every 10 ms), and device_del until it is gone and until kite no
# longer lists the disk (DEVICE_DELETED is sent then). Medians of `runs`.
# No peer runs in this script yet: QEMU's q35 with ACPI hotplug beside it is still to be added.
set -euo pipefail

bench_name=b10
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
runs=${1:-3}
bench_linux_guest

now_ns() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# wait_for FILE TEXT SECONDS: polls every 5 ms; prints the time it was seen (ns) or fails.
wait_for() {
  local until=$(($(now_ns) + $3 * 1000000000))
  while (($(now_ns) < until)); do
    if grep -qF "$2" "$1" 2>/dev/null; then now_ns; return 0; fi
    sleep 0.005
  done
  tail -n 30 "$1" >&2
  die "\"$2\" not seen in $1 within $3 s"
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'; }

truncate -s 256M "$work/disk.raw"
cmdline="console=ttyS0 reboot=k panic=1 quiet"

# One boot of the transport-bench guest; prints "boot_s mib_per_s reads_per_s ping_ms".
bench_once() {
  local out=$work/out.$1.$2 t0 seen
  t0=$(now_ns)
  "$kite" run --kernel "$kernel" --initrd "$initrd" --memory 256M --serial stdio \
    --transport "$1" --disk "path=$work/disk.raw,format=raw" --net user \
    --cmdline "$cmdline kite.test=transport-bench" </dev/null >"$out" 2>"$out.err" &
  local pid=$!
  pids+=("$pid")
  seen=$(wait_for "$out" "kite-guest: init started" 120)
  wait_for "$out" "kite-guest: powering off" 300 >/dev/null
  wait "$pid" || true
  awk -v boot="$(ms "$t0" "$seen")" '
    /kite-bench: seq-read/ { mibs = $4 / $6 }
    /kite-bench: 4k-read/ { iops = $4 / $6 }
    /kite-bench: ping/ { split($0, p, "= "); split(p[2], q, "/"); ping = q[2] }
    END { printf "%.2f %.0f %.0f %s\n", boot / 1000, mibs, iops, ping }' "$out"
}

echo "B10 transports ($(basename "$kernel"), 1 vCPU, 256 MiB, disk + user NIC + rng; median of $runs)"
printf '  %-6s %10s %12s %14s %10s\n' transport "boot s" "seq MiB/s" "4k reads/s" "ping ms"
for transport in mmio pci; do
  rows=()
  for ((r = 1; r <= runs; r++)); do rows+=("$(bench_once "$transport" "$r")"); done
  col() { printf '%s\n' "${rows[@]}" | awk -v c="$1" '{ print $c }' | median; }
  printf '  %-6s %10s %12s %14s %10s\n' "$transport" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)"
done

# Hotplug latency on a pci machine.
"$kite_img" create -f qcow2 "$work/hot.qcow2" 64M >/dev/null
add=() gone=() deleted=()
for ((r = 1; r <= runs; r++)); do
  out=$work/hp.$r sock=$work/hp.$r.sock
  "$kite" run --kernel "$kernel" --initrd "$initrd" --memory 256M --serial stdio \
    --transport pci --disk "path=$work/disk.raw,format=raw" --api-sock "$sock" \
    --cmdline "$cmdline kite.test=hotplug-wait" </dev/null >"$out" 2>"$out.err" &
  pid=$!
  pids+=("$pid")
  wait_for "$out" "kite-guest: init started" 120 >/dev/null
  sleep 0.5
  t0=$(now_ns)
  "$kite" ctl "$sock" device_add driver=virtio-blk-pci id=hot path="$work/hot.qcow2" \
    format=qcow2 >/dev/null
  add+=("$(ms "$t0" "$(wait_for "$out" "kite-bench: vdb present" 60)")")
  t0=$(now_ns)
  "$kite" ctl "$sock" device_del id=hot >/dev/null
  t1=$(wait_for "$out" "kite-bench: vdb gone" 60)
  until ! "$kite" ctl --json "$sock" query-block | grep -q '"qdev":"hot"'; do sleep 0.005; done
  t2=$(now_ns)
  gone+=("$(ms "$t0" "$t1")")
  deleted+=("$(ms "$t0" "$t2")")
  "$kite" ctl "$sock" quit >/dev/null || true
  wait "$pid" || true
done
echo "B10 hotplug (pci, a qcow2 disk; median of $runs)"
echo "  device_add -> guest has /sys/block/vdb:   $(printf '%s\n' "${add[@]}" | median) ms   (${add[*]})"
echo "  device_del -> guest has no vdb:           $(printf '%s\n' "${gone[@]}" | median) ms   (${gone[*]})"
echo "  device_del -> removed in kite (DELETED):  $(printf '%s\n' "${deleted[@]}" | median) ms   (${deleted[*]})"
