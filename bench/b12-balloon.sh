#!/bin/bash
# B12: the memory balloon — how much host memory a guest gives back, and how fast, kite beside
# QEMU's virtio-balloon on the same guest in the same run.
#
#   bench/b12-balloon.sh [runs]      (default 3; needs a /dev/kvm that runs guest userspace:
#                                     hardware or the nested VM of scripts/kvm-vm)
# Env: BUILD, KITE, KITE_GUEST_KERNEL (else guest-firmware/linux/guest-kernel.sh), QEMU
#
# Guest: kite's Linux guest (1 vCPU, 512 MiB) running guest-firmware/linux/tests/balloon: it
# writes 300 MiB into a tmpfs ("filled"), deletes it ("freed") and idles. The VMM's RSS
# (VmRSS of /proc/PID/status) is read:
#   inflate    after "freed" (the 300 MiB still resident on the host), then QMP `balloon` to
#              160 MiB; the time until query-balloon's actual is 160 MiB, and the RSS then;
#   reporting  with free page reporting on: at "filled", and the lowest RSS within 30 s after
#              "freed" (no inflate).
# The peer: QEMU -M microvm -accel kvm with virtio-balloon-device (free-page-reporting=on for
# the second) and the same kernel, initramfs and command line, driven by `kite ctl` (which
# speaks QMP to QEMU too). Medians of `runs`. QEMU is skipped, with a line, when not installed.
set -euo pipefail

bench_name=b12
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
runs=${1:-3}
bench_linux_guest

qemu=${QEMU:-qemu-system-x86_64}
have_qemu=0
command -v "$qemu" >/dev/null && have_qemu=1
cmdline="console=ttyS0 reboot=k panic=1 quiet kite.test=balloon"
target=$((160 << 20))

now_ns() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rss_mib() { awk '/^VmRSS:/ { printf "%d\n", $2 / 1024 }' "/proc/$1/status"; }
wait_for() {  # FILE TEXT SECONDS
  local until=$(($(now_ns) + $3 * 1000000000))
  while (($(now_ns) < until)); do
    grep -qF "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  tail -n 30 "$1" >&2
  die "\"$2\" not seen in $1 within $3 s"
}

# Starts VMM (kite | qemu) with the balloon (REPORTING: on | off); sets `pid` and `sock`.
start_vm() {
  local vmm=$1 reporting=$2 out=$3
  sock=$work/qmp.$vmm.sock
  rm -f "$sock"
  if [[ $vmm == kite ]]; then
    local spec=size=0
    [[ $reporting == on ]] && spec+=",free_page_reporting=on"
    "$kite" run --kernel "$kernel" --initrd "$initrd" --memory 512M --serial stdio \
      --balloon "$spec" --api-sock "$sock" --cmdline "$cmdline" </dev/null >"$out" 2>&1 &
  else
    local dev=virtio-balloon-device
    [[ $reporting == on ]] && dev+=",free-page-reporting=on"
    "$qemu" -M microvm,isa-serial=on,rtc=on -accel kvm -cpu host -m 512M -smp 1 -nodefaults \
      -no-user-config -display none -no-reboot -serial stdio -kernel "$kernel" \
      -initrd "$initrd" -append "$cmdline" -device "$dev" -device virtio-rng-device \
      -qmp "unix:$sock,server=on,wait=off" </dev/null >"$out" 2>&1 &
  fi
  pid=$!
  pids+=("$pid")
}

stop_vm() {
  "$kite" ctl "$sock" quit >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
}

# Prints "rss_before_mib seconds_to_target rss_after_mib".
inflate_once() {
  local out=$work/out.inflate.$1.$2 pid sock t0 t1 before after actual
  start_vm "$1" off "$out"
  wait_for "$out" "kite-balloon: freed" 300
  sleep 1
  before=$(rss_mib "$pid")
  t0=$(now_ns)
  "$kite" ctl "$sock" balloon value=$target >/dev/null
  for ((i = 0; i < 1200; i++)); do
    actual=$("$kite" ctl --json "$sock" query-balloon | python3 -c \
      'import json,sys; print(json.load(sys.stdin)["return"]["actual"])')
    [[ $actual == "$target" ]] && break
    sleep 0.05
  done
  [[ $actual == "$target" ]] || die "$1: the balloon did not reach its target (actual $actual)"
  t1=$(now_ns)
  sleep 1
  after=$(rss_mib "$pid")
  stop_vm
  awk -v b="$before" -v a="$after" -v t="$(((t1 - t0) / 1000000))" \
    'BEGIN { printf "%d %.2f %d\n", b, t / 1000, a }'
}

# Prints "rss_filled_mib rss_lowest_after_freed_mib".
report_once() {
  local out=$work/out.report.$1.$2 pid sock filled low rss
  start_vm "$1" on "$out"
  wait_for "$out" "kite-balloon: filled" 300
  sleep 1
  filled=$(rss_mib "$pid")
  wait_for "$out" "kite-balloon: freed" 60
  low=$filled
  for ((i = 0; i < 60; i++)); do
    sleep 0.5
    rss=$(rss_mib "$pid")
    ((rss < low)) && low=$rss
  done
  stop_vm
  echo "$filled $low"
}

echo "B12 balloon ($(basename "$kernel"), 1 vCPU, 512 MiB; 300 MiB written and freed in the guest; median of $runs)"
printf '  %-14s %12s %14s %12s %14s %14s\n' vmm "RSS freed" "to 160 MiB s" "RSS inflated" \
  "RSS filled" "RSS reported"
for vmm in kite qemu; do
  label=$vmm
  [[ $vmm == qemu ]] && label="qemu microvm"
  if [[ $vmm == qemu ]] && ((!have_qemu)); then
    printf '  %-14s (no %s here)\n' "$label" "$qemu"
    continue
  fi
  inflate=() report=()
  for ((r = 1; r <= runs; r++)); do
    inflate+=("$(inflate_once "$vmm" "$r")")
    report+=("$(report_once "$vmm" "$r")")
  done
  col() { printf '%s\n' "${@:2}" | awk -v c="$1" '{ print $c }' | median; }
  printf '  %-14s %12s %14s %12s %14s %14s\n' "$label" "$(col 1 "${inflate[@]}")" \
    "$(col 2 "${inflate[@]}")" "$(col 3 "${inflate[@]}")" "$(col 1 "${report[@]}")" \
    "$(col 2 "${report[@]}")"
done
echo "  (RSS in MiB: VmRSS of the VMM process)"
