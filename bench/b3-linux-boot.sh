#!/bin/bash
# B3 (BENCHMARKS.md): Linux boot to /init. Wall time from `kite run` start to the kernel's
# "Run /init as init process" line on the serial port (and, where /dev/kvm is hardware-backed,
# to the initramfs' "kite-guest: init started"), 1 vCPU, 128 MiB, plus kite's --stats VM-exit
# counts for the boot. No peer can boot here (QEMU stalls at int3 on emulated KVM): absolute.
#
# Usage: bench/b3-linux-boot.sh [runs]          (default 1: a boot takes minutes when KVM is
#                                                 emulated; use >= 5 on real hardware)
# Env:   BUILD, KITE, KITE_GUEST_KERNEL (else guest-firmware/linux/guest-kernel.sh),
#        TIMEOUT (seconds per boot, default 900),
#        KITE_ARGS (more kite options, e.g. "--cpus 1,pin=1 --emulator-pin 0" for the boot with
#        the vCPU and kite's other threads pinned to different host CPUs)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$repo/build}
kite=${KITE:-$build/src/vmm/kite}
runs=${1:-1}
timeout_s=${TIMEOUT:-900}
die() { echo "b3: $*" >&2; exit 1; }

[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here: B3 needs KVM"
[[ -x "$kite" ]] || die "no kite binary at $kite (set BUILD or KITE)"
kernel=$("$repo/guest-firmware/linux/guest-kernel.sh")  # honours KITE_GUEST_KERNEL
initrd=$("$repo/guest-firmware/linux/build-initramfs.sh")

marker="Run /init as init process"
grep -qwE 'vmx|svm' /proc/cpuinfo && marker="kite-guest: init started"
cmdline="console=ttyS0 reboot=k panic=-1 lpj=5000000 tsc=reliable no_timer_check"
cmdline+=" i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd noxsave"
cmdline+=" clearcpuid=smap,smep,popcnt,rdrand,rdseed,fsgsbase,clflushopt,clwb,rdpid,bmi1,bmi2"
cmdline+=",adx,movbe,abm,pku,umip"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# boot_once <n>: prints the seconds to the marker; kite's stderr (with --stats) is kept.
boot_once() {
  local out=$work/out.$1 err=$work/err.$1 t0 pid
  t0=$(date +%s%N)
  "$kite" run --kernel "$kernel" --initrd "$initrd" --cmdline "$cmdline" --cpus 1 \
    --memory 128M --serial stdio --stats ${KITE_ARGS:-} </dev/null >"$out" 2>"$err" &
  pid=$!
  local seen=""
  while kill -0 "$pid" 2>/dev/null; do
    if grep -qF "$marker" "$out"; then
      seen=$(date +%s%N)
      break
    fi
    (($(date +%s%N) - t0 < timeout_s * 1000000000)) || break
    sleep 0.05
  done
  # SIGTERM: kite stops the guest and prints its --stats; SIGKILL if it does not end.
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ -z "$seen" ]]; then
    tail -n 20 "$out" >&2
    cat "$err" >&2
    die "boot $1: \"$marker\" not seen within ${timeout_s}s"
  fi
  awk -v a="$t0" -v b="$seen" 'BEGIN { printf "%.2f\n", (b - a) / 1e9 }'
}

times=()
for ((r = 1; r <= runs; r++)); do
  t=$(boot_once "$r") || exit 1
  times+=("$t")
done
median=$(printf '%s\n' "${times[@]}" | sort -n |
  awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }')

echo "B3 Linux boot to init ($(basename "$kernel"), 1 vCPU, 128 MiB, $runs run(s))"
echo "  waited for: $marker"
[[ -z ${KITE_ARGS:-} ]] || echo "  kite options added: $KITE_ARGS"
echo "  times (s):  ${times[*]}"
echo "  median:     $median s"
echo "  kite --stats of the last boot (stderr):"
sed 's/^/    /' "$work/err.$runs"
