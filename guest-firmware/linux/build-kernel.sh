#!/bin/bash
# build-kernel.sh: builds kite's small Linux guest kernel from Debian's linux-source-6.1.
#
#   make tinyconfig; merge kernel-fragment.config (merge_config.sh -m); make olddefconfig;
#   build vmlinux and bzImage; check that every option the fragment asks for took effect.
#
# Results are cached under ${KITE_CACHE_DIR:-$HOME/.cache/kite}/guest/<key>/ where <key> is a
# hash of the fragment and the kernel source version, so a changed fragment or kernel package
# builds again and an unchanged one is found at once. Prints the path of vmlinux on stdout
# (progress goes to stderr).
#
# Environment:
#   KITE_GUEST_KERNEL=/path/to/vmlinux  skip the build; print this path (must exist)
#   KITE_CACHE_DIR                       cache root (default $HOME/.cache/kite)
#   KITE_BUILD_JOBS                      make -j (default 2)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment="$here/kernel-fragment.config"
cache_root="${KITE_CACHE_DIR:-$HOME/.cache/kite}/guest"
jobs="${KITE_BUILD_JOBS:-2}"

log() { echo "build-kernel: $*" >&2; }
die() { echo "build-kernel: error: $*" >&2; exit 1; }

if [[ -n "${KITE_GUEST_KERNEL:-}" ]]; then
  [[ -f "$KITE_GUEST_KERNEL" ]] || die "KITE_GUEST_KERNEL=$KITE_GUEST_KERNEL is not a file"
  echo "$KITE_GUEST_KERNEL"
  exit 0
fi
[[ -f "$fragment" ]] || die "missing $fragment"

# Build dependencies (Debian 12). Installing needs root; say what is missing otherwise.
deps=(linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev xz-utils)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
  else
    die "missing packages (run as root or install them): ${missing[*]}"
  fi
fi

tarball=$(ls /usr/src/linux-source-6.1.tar.xz 2>/dev/null || true)
[[ -n "$tarball" ]] || die "linux-source-6.1 installed but /usr/src/linux-source-6.1.tar.xz is missing"
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( (cat "$fragment"; echo "linux-source-6.1 $src_version") | sha256sum | cut -c1-16)
out="$cache_root/$key"

if [[ -f "$out/vmlinux" && -f "$out/bzImage" && -f "$out/kernel.config" ]]; then
  log "cached: $out"
  echo "$out/vmlinux"
  exit 0
fi

work="$cache_root/build-$key"
rm -rf "$work"
mkdir -p "$work"
log "unpacking $tarball into $work"
tar -C "$work" -xf "$tarball"
srcdir="$work/linux-source-6.1"
[[ -d "$srcdir" ]] || die "unexpected tarball layout (no linux-source-6.1/ in $tarball)"

cd "$srcdir"
log "make ARCH=x86_64 tinyconfig"
make -s ARCH=x86_64 tinyconfig >&2
log "merging $fragment"
scripts/kconfig/merge_config.sh -m .config "$fragment" >&2
make -s ARCH=x86_64 olddefconfig >&2

# Every option of the fragment must be in the final config as asked: a dependency the
# fragment forgot makes olddefconfig drop an option silently.
bad=0
while IFS= read -r line; do
  if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=n$ || "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set ]]; then
    if grep -qE "^${BASH_REMATCH[1]}=" .config; then
      log "option ${BASH_REMATCH[1]} should be unset but is: $(grep -E "^${BASH_REMATCH[1]}=" .config)"
      bad=1
    fi
  elif [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    if ! grep -qxF "$line" .config; then
      log "option $line did not take effect (got: $(grep -E "^${BASH_REMATCH[1]}[= ]" .config || echo unset))"
      bad=1
    fi
  fi
done <"$fragment"
((bad == 0)) || die "the fragment's options did not all take effect; fix kernel-fragment.config"

log "building vmlinux and bzImage with make -j$jobs (several minutes)"
nice -n 19 make -s ARCH=x86_64 -j"$jobs" vmlinux bzImage >&2

mkdir -p "$out.tmp"
strip --strip-all -o "$out.tmp/vmlinux" vmlinux
cp arch/x86/boot/bzImage "$out.tmp/bzImage"
cp .config "$out.tmp/kernel.config"
cp "$fragment" "$out.tmp/kernel-fragment.config"
rm -rf "$out"
mv "$out.tmp" "$out"
cd /
rm -rf "$work"
log "done: $out"
echo "$out/vmlinux"
