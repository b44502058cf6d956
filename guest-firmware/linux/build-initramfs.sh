#!/bin/bash
# build-initramfs.sh: packs kite's test initramfs: Debian's static busybox, the /init script
# beside this file, and the scripts in tests/ (run by kite.test=NAME), as an uncompressed
# newc cpio (no decompression in the guest: guest instructions are expensive on emulated KVM),
# with /bin/vsock-test (vsock/vsock-test.c, built static with gcc: busybox has no AF_VSOCK).
# Cached under ${KITE_CACHE_DIR:-$HOME/.cache/kite}/guest/ by a hash of its inputs; prints the
# path of the archive on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root="${KITE_CACHE_DIR:-$HOME/.cache/kite}/guest"
die() { echo "build-initramfs: error: $*" >&2; exit 1; }

busybox=/bin/busybox
# Static means no program interpreter (PT_INTERP) in the ELF.
is_static() { [[ -x "$busybox" ]] && ! readelf -l "$busybox" 2>/dev/null | grep -q INTERP; }
if ! is_static; then
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2
  fi
  is_static || die "$busybox is not a static busybox (install the busybox-static package)"
fi
command -v cpio >/dev/null || die "cpio is not installed"
# Two static programs of our own (gcc -static, libc6-dev): vsock-test (vsock/vsock-test.c:
# AF_VSOCK, which busybox lacks) and set-channels (tools/set-channels.c: ethtool -L's ioctl).
command -v gcc >/dev/null || die "gcc is not installed (it builds vsock-test and set-channels)"
key=$( (sha256sum "$busybox" "$here/init" "$here"/tests/* "$here"/vsock/*.c \
  "$here/tools/set-channels.c" 2>/dev/null | cut -d' ' -f1) |
  sha256sum | cut -c1-16)
out="$cache_root/initramfs-$key.cpio"
if [[ -f "$out" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/initramfs-staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,tests}
cp "$busybox" "$staging/bin/busybox"
for applet in $("$busybox" --list-full); do
  [[ "$applet" == bin/busybox ]] || ln -sf /bin/busybox "$staging/$applet"
done
install -m 0755 "$here/init" "$staging/init"
gcc -static -O2 -Wall -o "$staging/bin/vsock-test" "$here/vsock/vsock-test.c" >&2 ||
  die "building vsock-test failed (static glibc: the libc6-dev package)"
gcc -static -Os -Wall -o "$staging/bin/set-channels" "$here/tools/set-channels.c" >&2 ||
  die "building tools/set-channels.c failed (gcc -static needs libc6-dev)"
for t in "$here"/tests/*; do
  [[ -f "$t" ]] && install -m 0755 "$t" "$staging/tests/"
done
(cd "$staging" && find . -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc --owner=0:0 --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
