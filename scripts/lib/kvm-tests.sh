#!/usr/bin/env bash
# The KVM part of scripts/test.sh, run where a working /dev/kvm is (this host, or the nested VM
# of scripts/kvm-vm): the plain build's tests with LABELS, then, when their build directories
# are given, the kvm tests of the AddressSanitizer + UBSan build (but the seccomp ones: that
# build runs without filters) and the kvm tests of the threaded parts under ThreadSanitizer.
#   kvm-tests.sh BUILD LABELS [ASAN_BUILD TSAN_BUILD]
# Exits 1 when any ctest run failed.
set -uo pipefail
build=$1 labels=$2 asan_build=${3:-} tsan_build=${4:-}
status=0
ctest --test-dir "$build" -L "$labels" --output-on-failure || status=1
if [[ -n $asan_build ]]; then
  echo "== kvm tests under AddressSanitizer + UBSan"
  ctest --test-dir "$asan_build" -L kvm -LE seccomp --output-on-failure || status=1
fi
if [[ -n $tsan_build ]]; then
  echo "== kvm tests of the threaded parts under ThreadSanitizer"
  ctest --test-dir "$tsan_build" -L kvm -L threads --output-on-failure || status=1
fi
exit "$status"
