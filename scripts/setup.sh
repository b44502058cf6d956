#!/usr/bin/env bash
# Installs every Debian 12 package kite needs and builds it into build/.
# Idempotent: a second run installs nothing and rebuilds only what changed.
#   KITE_BUILD_DIR   build directory (default: build)
#   KITE_SKIP_APT=1  do not touch packages (you installed them yourself)
#   CI=true          warnings are errors
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  build-essential cmake ninja-build pkg-config git clang libclang-rt-14-dev
  # libraries
  libfdt-dev libasio-dev nlohmann-json3-dev libgtest-dev libgmock-dev liburing-dev
  libslirp-dev libglib2.0-dev zlib1g-dev libzstd-dev libseccomp-dev
  # tests and tools: ACPI table decompiler, qcow2 oracle, Linux guest initramfs, peers
  acpica-tools qemu-utils qemu-system-x86 busybox-static cpio fio e2fsprogs iperf3 iproute2 socat
  # the Debian master image of examples/debian-master.sh (docs/TUTORIAL.md)
  debootstrap
)

if [[ "${KITE_SKIP_APT:-0}" != 1 ]]; then
  source scripts/lib/apt.sh
  apt_install_missing "${packages[@]}"
fi

build_dir="${KITE_BUILD_DIR:-build}"
werror=OFF
[[ "${CI:-}" == true ]] && werror=ON
cmake -S . -B "$build_dir" -G Ninja -DKITE_WERROR="$werror" >/dev/null
ninja -C "$build_dir"
