#!/usr/bin/env bash
# The KVM part of scripts/test.sh, run where a working /dev/kvm is (this host, or the nested VM
# of scripts/kvm-vm): the plain build's tests with LABELS, then, when their build directories
# are given, the kvm tests of the AddressSanitizer + UBSan build (but the seccomp ones: that
# build runs without filters) and the kvm tests of the threaded parts under ThreadSanitizer.
#   kvm-tests.sh BUILD LABELS [ASAN_BUILD TSAN_BUILD]
# Exits 1 when any ctest run failed.
#
# Each test that passes is listed in BUILD/Testing/kite-passed (per build directory). With
# KITE_KVM_RESUME=1 (scripts/test.sh sets it when it runs the suite again after the nested VM
# wedged) the tests listed there are not run again: a retry goes on from the test the VM
# wedged in instead of from the start. A test that failed before the wedge (listed in
# BUILD/Testing/kite-failed) is not run again either, and still makes the run fail. Without
# KITE_KVM_RESUME the lists start empty.
#
# KITE_KVM_PART (plain, asan or tsan; default all three) runs one of the three only:
# scripts/test.sh gives each its own nested VM, so that one part's wedges and time do not eat
# into the next one's.
set -uo pipefail
build=$1 labels=$2 asan_build=${3:-} tsan_build=${4:-}
status=0

run_ctest() {  # run_ctest DIR CTEST_ARGS...
  local dir=$1 passed=$1/Testing/kite-passed failed=$1/Testing/kite-failed exclude=() line
  shift
  mkdir -p "$dir/Testing"
  touch "$passed" "$failed"
  if [[ ${KITE_KVM_RESUME:-0} == 1 ]] && [[ -s $passed || -s $failed ]]; then
    # ctest -E takes a regular expression: the names, escaped, as one alternation.
    exclude=(-E "^($(cat "$passed" "$failed" | sed 's/[][\.*^$+?(){}|]/\\&/g' | paste -sd'|'))\$")
    echo "== $dir: $(wc -l < "$passed") tests passed and $(wc -l < "$failed") failed before the VM wedged; not run again"
    sed 's/^/   failed before the VM wedged: /' "$failed"
  else
    : > "$passed"
    : > "$failed"
  fi
  ctest --test-dir "$dir" "$@" "${exclude[@]}" --output-on-failure 2>&1 | while IFS= read -r line; do
    printf '%s\n' "$line"
    if [[ $line =~ ^\ *[0-9]+/[0-9]+\ Test\ +\#[0-9]+:\ (.*[^ ])\ \.+\ +Passed ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}" >> "$passed"
    elif [[ $line =~ ^\ *[0-9]+/[0-9]+\ Test\ +\#[0-9]+:\ (.*[^ ])\ \.*\*\*\* ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}" >> "$failed"
    fi
  done || return 1
  [[ ! -s $failed ]]
}

part=${KITE_KVM_PART:-all}
[[ $part =~ ^(all|plain|asan|tsan)$ ]] || { echo "kvm-tests.sh: KITE_KVM_PART=$part: expected plain, asan or tsan" >&2; exit 2; }
if [[ $part == all || $part == plain ]]; then
  run_ctest "$build" -L "$labels" || status=1
fi
if [[ -n $asan_build && ($part == all || $part == asan) ]]; then
  echo "== kvm tests under AddressSanitizer + UBSan"
  run_ctest "$asan_build" -L kvm -LE seccomp || status=1
fi
if [[ -n $tsan_build && ($part == all || $part == tsan) ]]; then
  echo "== kvm tests of the threaded parts under ThreadSanitizer"
  run_ctest "$tsan_build" -L kvm -L threads || status=1
fi
exit "$status"
