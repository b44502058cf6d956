#!/bin/bash
# test-under-qemu.sh: runs every tiny guest (PVH variant) under QEMU with TCG, no /dev/kvm
# needed, and checks what it prints and how it ends. This proves the guests themselves,
# independent of kite. Usage: test-under-qemu.sh <dir with the .elf files> [program...]
# Exit status 0 when all pass; 77 (ctest: skipped) when QEMU is missing, but 1 under CI=true
# (tests/testing/tool_required.h's policy). QEMU's isa-debug-exit maps the guest's code c to
# (c << 1) | 1: a guest that powers off cleanly ends with 1; a reset or triple fault with
# -no-reboot ends 0.
set -uo pipefail

dir=${1:?usage: test-under-qemu.sh DIR [program...]}
shift
qemu=${QEMU:-qemu-system-x86_64}
if ! command -v "$qemu" >/dev/null; then
  if [[ ${CI:-} == true ]]; then
    echo "CI=true but $qemu (qemu-system-x86) is not found: the firmware tests must run in CI" >&2
    exit 1
  fi
  echo "skipped: $qemu (qemu-system-x86) is not found" >&2
  exit 77
fi
microvm=(-M microvm,x-option-roms=off,rtc=off)
failures=0

# run <name> <expected status> <expected regex> [extra qemu args...] (stdin: serial input)
run() {
  local name=$1 want_status=$2 want=$3
  shift 3
  local out status
  out=$(timeout 60 "$qemu" -accel tcg "${microvm[@]}" -nodefaults -no-user-config -nographic \
    -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -m 128M -no-reboot \
    -kernel "$dir/$name.elf" "$@" 2>&1)
  status=$?
  if [[ $status -ne $want_status ]] || ! grep -Eq "$want" <<<"$out"; then
    echo "FAIL $name: status $status (want $want_status), output:"
    sed 's/^/  | /' <<<"$out"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

selected=("$@")
sel() { ((${#selected[@]} == 0)) || [[ " ${selected[*]} " == *" $1 "* ]]; }

sel hello && run hello 1 '^hello: kite guest is alive' </dev/null
sel int3 && run int3 1 'int3: returned from handler' </dev/null
sel unknown_port && run unknown_port 1 '^unknown_port: ok' </dev/null
sel cpuid && run cpuid 1 '^cpuid: vendor=[A-Za-z]{12} family=[0-9]+ model=[0-9]+ apic_id=0 ' </dev/null
sel memtest && run memtest 1 '^memtest: ram 1306[0-9]{2} KiB in [0-9]+ ranges, top 8000000, [0-9]+ pages ok' </dev/null
sel timer && run timer 1 '^timer: ok' </dev/null
sel smp && run smp 1 '^smp: 2 cpus up' -smp 2 </dev/null
sel triple_fault && run triple_fault 0 'triple_fault: loading an empty IDT' </dev/null
# microvm has no reset device: the guest reports that and exits with code 1 (status 3).
sel reboot && run reboot 3 'reboot: requesting reset' </dev/null
sel serial_echo && run serial_echo 1 '^xy' < <(sleep 1; printf 'xyq')
# virtio guests. virtio_bad and virtio_setup are kite-specific: QEMU accepts many of the
# malformed chains and set-up steps they expect to be refused.
virtio=(-global virtio-mmio.force-legacy=false)
disk=$(mktemp) && truncate -s 1M "$disk" && trap 'rm -f "$disk"' EXIT
sel virtio_rng && run virtio_rng 1 '^virtio_rng: ok' "${virtio[@]}" -device virtio-rng-device </dev/null
sel virtio_blk && run virtio_blk 1 '^virtio_blk: ok' "${virtio[@]}" \
  -drive id=d0,file="$disk",format=raw,if=none -device virtio-blk-device,drive=d0 </dev/null
sel virtio_net && run virtio_net 1 '^virtio_net: ok' "${virtio[@]}" \
  -netdev user,id=n0 -device virtio-net-device,netdev=n0 </dev/null
exit $((failures > 0))
