# Sourced by the benchmarks that boot kite's Linux guest with userspace (b10-transport.sh,
# soak.sh): where kite is, the checks every such run needs first, the guest kernel and
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
