# Sourced by the benchmarks that boot kite's Linux guest with userspace (b10-transport.sh,
# b11-vsock.sh, soak.sh): where kite is, the checks every such run needs first, the guest kernel and
# initramfs, and a work directory whose kites are killed and whose files go when the script ends.
#   bench_name=b10; source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"; bench_linux_guest
# Env: BUILD (build), KITE (BUILD/src/vmm/kite), KITE_GUEST_KERNEL (else guest-kernel.sh's).
# Sets repo, build, kite, kite_img, kernel, initrd, work, and pids (add each kite started, so
# the exit trap kills it); defines die.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$repo/build}
kite=${KITE:-$build/src/vmm/kite}
kite_img=$build/src/storage/img/kite-img
die() { echo "${bench_name:-bench}: $*" >&2; exit 1; }

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

# Checks /dev/kvm and the binaries, finds (or builds) the guest kernel and initramfs, makes the
# work directory and sets the exit trap.
bench_linux_guest() {
  [[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here"
  [[ -x "$kite" && -x "$kite_img" ]] || die "no kite or kite-img under $build (set BUILD)"
  kernel=${KITE_GUEST_KERNEL:-$("$repo/guest-firmware/linux/guest-kernel.sh")}
  initrd=$("$repo/guest-firmware/linux/build-initramfs.sh")
  work=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

# Timing helpers for scripts that watch a guest's console (b10, b11).
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
