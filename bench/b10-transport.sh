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
# The peer, in the same run with the same kernel, initramfs and disk: QEMU (-accel kvm) as
# microvm with virtio-mmio devices and as q35 with virtio-pci ones (SeaBIOS first, QEMU's own
# path on q35), and for hotplug q35 with a pcie-root-port (ACPI hotplug, QEMU's q35 default):
# blockdev-add + device_add, device_del, driven by `kite ctl`, which speaks QMP to QEMU too.
# QEMU (default qemu-system-x86_64) is skipped, with a line, when it is not installed.
set -euo pipefail

bench_name=b10
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
runs=${1:-3}
bench_linux_guest

truncate -s 256M "$work/disk.raw"
cmdline="console=ttyS0 reboot=k panic=1 quiet"

qemu=${QEMU:-qemu-system-x86_64}
have_qemu=0
command -v "$qemu" >/dev/null && have_qemu=1

# The command line of VMM (kite | qemu) with virtio TRANSPORT (mmio | pci) for one boot of the
# guest with the kernel command line CMDLINE, into the array `vm`.
vm_command() {
  local vmm=$1 transport=$2 cmd=$3
  if [[ $vmm == kite ]]; then
    vm=("$kite" run --kernel "$kernel" --initrd "$initrd" --memory 256M --serial stdio
      --transport "$transport" --disk "path=$work/disk.raw,format=raw" --net user
      --cmdline "$cmd")
    return
  fi
  local machine=q35 dev=pci
  [[ $transport == mmio ]] && machine=microvm,isa-serial=on,rtc=on dev=device
  vm=("$qemu" -M "$machine" -accel kvm -cpu host -m 256M -smp 1 -nodefaults -no-user-config
    -display none -no-reboot -serial stdio -kernel "$kernel" -initrd "$initrd" -append "$cmd"
    -drive "id=d0,file=$work/disk.raw,format=raw,if=none" -device "virtio-blk-$dev,drive=d0"
    -netdev user,id=n0 -device "virtio-net-$dev,netdev=n0" -device "virtio-rng-$dev")
}

# One boot of the transport-bench guest; prints "boot_s mib_per_s reads_per_s ping_ms".
bench_once() {
  local out=$work/out.$1.$2.$3 t0 seen vm
  vm_command "$1" "$2" "$cmdline kite.test=transport-bench"
  t0=$(now_ns)
  "${vm[@]}" </dev/null >"$out" 2>"$out.err" &
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
printf '  %-14s %10s %12s %14s %10s\n' "vmm transport" "boot s" "seq MiB/s" "4k reads/s" "ping ms"
for row in "kite mmio" "kite pci" "qemu mmio" "qemu pci"; do
  read -r vmm transport <<<"$row"
  label="kite $transport"
  if [[ $vmm == qemu ]]; then
    label="qemu microvm"
    [[ $transport == pci ]] && label="qemu q35"
    ((have_qemu)) || { printf '  %-14s (no %s here)\n' "$label" "$qemu"; continue; }
  fi
  rows=()
  for ((r = 1; r <= runs; r++)); do rows+=("$(bench_once "$vmm" "$transport" "$r")"); done
  col() { printf '%s\n' "${rows[@]}" | awk -v c="$1" '{ print $c }' | median; }
  printf '  %-14s %10s %12s %14s %10s\n' "$label" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)"
done

# Hotplug latency on a pci machine: kite, then QEMU's q35 with a free pcie-root-port. One run:
# "add_ms gone_ms deleted_ms". The VMM is out of the disk when kite no longer lists it
# (query-block) or QEMU no longer has the device (qom-list of /machine/peripheral).
"$kite_img" create -f qcow2 "$work/hot.qcow2" 64M >/dev/null
hotplug_once() {
  local vmm=$1 out=$work/hp.$1.$2 sock=$work/hp.$1.$2.sock vm t0 t1 t2 pid
  vm_command "$vmm" pci "$cmdline kite.test=hotplug-wait"
  if [[ $vmm == kite ]]; then
    vm+=(--api-sock "$sock")
  else
    vm+=(-device pcie-root-port,id=rp1,chassis=1,slot=1 -qmp "unix:$sock,server=on,wait=off")
  fi
  "${vm[@]}" </dev/null >"$out" 2>"$out.err" &
  pid=$!
  pids+=("$pid")
  wait_for "$out" "kite-guest: init started" 120 >/dev/null
  sleep 0.5
  t0=$(now_ns)
  if [[ $vmm == kite ]]; then
    "$kite" ctl "$sock" device_add driver=virtio-blk-pci id=hot path="$work/hot.qcow2" \
      format=qcow2 >/dev/null
  else
    "$kite" ctl "$sock" blockdev-add node-name=hot driver=qcow2 \
      "file={\"driver\":\"file\",\"filename\":\"$work/hot.qcow2\"}" >/dev/null
    "$kite" ctl "$sock" device_add driver=virtio-blk-pci id=hot drive=hot bus=rp1 >/dev/null
  fi
  t1=$(wait_for "$out" "kite-bench: vdb present" 60)
  printf '%s ' "$(ms "$t0" "$t1")"
  t0=$(now_ns)
  "$kite" ctl "$sock" device_del id=hot >/dev/null
  t1=$(wait_for "$out" "kite-bench: vdb gone" 60)
  if [[ $vmm == kite ]]; then
    until ! "$kite" ctl --json "$sock" query-block | grep -q '"qdev":"hot"'; do sleep 0.005; done
  else
    until ! "$kite" ctl --json "$sock" qom-list path=/machine/peripheral |
      grep -q '"name":"hot"'; do sleep 0.005; done
  fi
  t2=$(now_ns)
  echo "$(ms "$t0" "$t1") $(ms "$t0" "$t2")"
  "$kite" ctl "$sock" quit >/dev/null || true
  wait "$pid" || true
}

echo "B10 hotplug (pci, a qcow2 disk; median of $runs)"
printf '  %-10s %26s %26s %30s\n' vmm "device_add -> guest's vdb" "device_del -> vdb gone" \
  "device_del -> out of the VMM"
for vmm in kite qemu; do
  if [[ $vmm == qemu ]] && ((!have_qemu)); then
    printf '  %-10s (no %s here)\n' "qemu q35" "$qemu"
    continue
  fi
  rows=()
  for ((r = 1; r <= runs; r++)); do rows+=("$(hotplug_once "$vmm" "$r")"); done
  col() { printf '%s\n' "${rows[@]}" | awk -v c="$1" '{ print $c }' | median; }
  label=$vmm
  [[ $vmm == qemu ]] && label="qemu q35"
  printf '  %-10s %23s ms %23s ms %27s ms\n' "$label" "$(col 1)" "$(col 2)" "$(col 3)"
done
