#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up and build (scripts/setup.sh), then the unit tests,
# then the KVM tests (tiny guest-firmware programs) and the e2e tests (the Linux guest).
#
# KVM tests need /dev/kvm. Where the host has none (a VM without nested virtualization, like
# the machines kite is developed on), or where its /dev/kvm emulates guest instructions (no
# vmx/svm CPU flag: Linux userspace cannot run there), they run inside a QEMU VM whose
# emulated AMD SVM gives a real /dev/kvm (scripts/kvm-vm/), hundreds of times faster than the
# emulating one. Where neither works they are skipped with a message, and
# under CI=true they fail: CI never counts a KVM test that did not run as a pass.
#   KITE_TEST_LABELS   ctest label regex for the KVM part (default: kvm|e2e|fault; fault: failing
#                      devices via device-mapper, root, tests/fault)
#   KITE_NO_KVM_VM=1   never use the nested VM
#   KITE_SKIP_SANITIZERS=1  no ASan+UBSan, TSan and fuzz builds (KITE_FUZZ_SECONDS: time per
#                      fuzzer, 15)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
build=${KITE_BUILD_DIR:-build}
scripts/setup.sh

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
run_ctest() {  # run_ctest [prefix command...] -- ctest args
  local out rc=0
  out=$(mktemp)
  "$@" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
  grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$out" >> "$summary" || true
  grep -cE '\*\*\*Skipped|Not Run' "$out" | sed 's/^/skipped /' >> "$summary" || true
  rm -f "$out"
  return "$rc"
}

# kite's own guest kernel (guest-firmware/linux): the loader unit tests read it, the boot kvm
# tests and the e2e tests boot it. Take it from the cache or build it here, on the host, before
# any test and before the nested VM (about 7 minutes the first time).
echo "== kite's guest kernel (guest-firmware/linux)"
guest-firmware/linux/guest-kernel.sh >/dev/null

status=0

# The Debian 12 master image of examples/debian-master.sh (debootstrap from the archive this
# host's apt uses; a few minutes the first time), for the e2e test of a real distribution
# (tests/e2e/debian_e2e_test.cc). Cached by the script's hash; built on the host, before the
# nested VM, which reads it through KITE_DEBIAN_MASTER.
labels=${KITE_TEST_LABELS:-kvm|e2e|fault}
if [[ $labels == *e2e* ]]; then
  echo "== Debian 12 master image (examples/debian-master.sh)"
  key=$(sha256sum examples/debian-master.sh | cut -c1-12)
  export KITE_DEBIAN_MASTER=${KITE_DEBIAN_MASTER:-${KITE_CACHE_DIR:-$HOME/.cache/kite}/debian-master-$key}
  if [[ ! -f $KITE_DEBIAN_MASTER/debian-12-master.qcow2 ]]; then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo --preserve-env=KITE_CACHE_DIR,HOME"
    $sudo examples/debian-master.sh -o "$KITE_DEBIAN_MASTER" --kite-img "$build/src/storage/img/kite-img" >/dev/null ||
      { echo "== the Debian master image could not be built: its e2e test will fail"; status=1; }
  fi
fi

echo "== unit and stress tests (no KVM)"
run_ctest ctest --test-dir "$build" -L "unit|stress|firmware" --output-on-failure -j2 || status=1

# Sanitizers and fuzzers (docs/SECURITY.md, "Sanitizers and fuzzing"). One clang build with
# AddressSanitizer and UndefinedBehaviorSanitizer on everything (a UB finding aborts) runs the
# unit tests here and the kvm tests below, and is also the fuzz build: its parser libraries
# carry libFuzzer's coverage too, so they are compiled once for both. Each fuzzer replays its
# committed seed corpus (fuzz/corpus/) and fuzzes for KITE_FUZZ_SECONDS (15 s by default: 11
# fuzzers, two at a time, about 1.5 minutes); long runs: fuzz/campaign.sh. A gcc build with
# ThreadSanitizer builds only the tests of the threaded parts (label threads: the async disk
# layer and io_uring queue, virtio devices and transports, the control socket, block jobs, the
# in-process VM lifecycle) and runs them. Sanitizer builds run without seccomp filters, so the
# tests of the filters themselves (label seccomp) run in the plain build only.
asan_build="${build}-asan" tsan_build="${build}-tsan"
sanitizers=0
if [[ ${KITE_SKIP_SANITIZERS:-0} != 1 ]]; then
  sanitizers=1
  ccache_launcher="$(command -v ccache || true)"
  # -O1 (what the sanitizers' authors advise) and line tables only (enough for symbolized
  # reports): both builds compile in much less time than with -O2 -g.
  sanitizer_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG")
  echo "== AddressSanitizer + UBSan build (clang; also the fuzz targets)"
  CC=clang CXX=clang++ cmake -S . -B "$asan_build" -G Ninja -DKITE_SANITIZE=ON -DKITE_FUZZ=ON \
    -DKITE_FUZZ_SECONDS="${KITE_FUZZ_SECONDS:-15}" "${sanitizer_flags[@]}" \
    -DCMAKE_CXX_COMPILER_LAUNCHER="$ccache_launcher" >/dev/null
  # CCACHE_BASEDIR: paths relative to the clone, so a fresh clone in another folder can hit
  # the cache.
  CCACHE_BASEDIR="$repo" ninja -C "$asan_build"
  echo "== unit tests under AddressSanitizer + UBSan"
  run_ctest ctest --test-dir "$asan_build" -L unit -LE seccomp --output-on-failure -j2 || status=1
  echo "== fuzzers (libFuzzer, ${KITE_FUZZ_SECONDS:-15} s each)"
  run_ctest ctest --test-dir "$asan_build" -L fuzz --output-on-failure -j2 || status=1

  echo "== ThreadSanitizer build (gcc; the tests labelled threads)"
  cmake -S . -B "$tsan_build" -G Ninja -DKITE_TSAN=ON "${sanitizer_flags[@]}" \
    -DCMAKE_CXX_COMPILER_LAUNCHER="$ccache_launcher" >/dev/null
  CCACHE_BASEDIR="$repo" ninja -C "$tsan_build" kite_threads_tests
  echo "== the threaded parts under ThreadSanitizer"
  run_ctest ctest --test-dir "$tsan_build" -L threads -LE kvm --output-on-failure -j2 || status=1
fi

kvm_tests=(scripts/lib/kvm-tests.sh "$build" "$labels")
((sanitizers)) && kvm_tests+=("$asan_build" "$tsan_build")
source scripts/lib/kvm-host.sh
kvm_host=$(kvm_host_kind)
kvm_vm_ok=0
if [[ $kvm_host != hardware && ${KITE_NO_KVM_VM:-0} != 1 ]] && scripts/kvm-vm/setup.sh; then
  kvm_vm_ok=1
fi
if [[ $kvm_host == hardware ]] || [[ $kvm_host == emulating && $kvm_vm_ok == 0 ]]; then
  echo "== KVM tests on this host's /dev/kvm ($kvm_host)"
  run_ctest "${kvm_tests[@]}" || status=1
elif ((kvm_vm_ok)); then
  if [[ $kvm_host == emulating ]]; then
    echo "== this host's /dev/kvm emulates guest code (no vmx/svm flag): KVM tests run in a nested VM (scripts/kvm-vm), which runs it natively under TCG's SVM"
  else
    echo "== no /dev/kvm on this host: KVM tests run in a nested VM (scripts/kvm-vm)"
  fi
  # Three parts, each in a nested VM of its own (KITE_KVM_PART): the plain build's labels
  # (about 20 minutes: the Debian and snapshot e2e tests boot Linux many times), then the
  # sanitizer builds' kvm tests (about 8 and 3 minutes); a VM's KITE_VM_TIMEOUT (1800 s) is
  # per part. The nested VM (kvm_amd on QEMU's emulated SVM, one vCPU:
  # scripts/kvm-vm/README.md) may still wedge its own kernel now and then: a VM that stalls
  # (the runner exits 124 on its timeout or when the VM sat idle, no CPU and no output, for
  # KITE_VM_IDLE_TIMEOUT = 300 s; 125 when the VM died before the command finished) is
  # retried, up to three attempts per part: that is the test machinery failing, not a test. A
  # retry goes on from the test the VM wedged in (KITE_KVM_RESUME: the tests that passed
  # before are not run again; their count is added to the closing line). A test failure
  # (ctest's own status) is never retried.
  export KITE_VM_TIMEOUT=${KITE_VM_TIMEOUT:-1800}
  parts=("plain:$build")
  ((sanitizers)) && parts+=("asan:$asan_build" "tsan:$tsan_build")
  for entry in "${parts[@]}"; do
    part=${entry%%:*} passed_list=${entry#*:}/Testing/kite-passed
    passed_count() { cat "$passed_list" 2>/dev/null | wc -l; }
    earlier=0
    for attempt in 1 2 3; do
      rc=0
      echo "== nested VM: the $part part's kvm tests (attempt $attempt)"
      ((attempt > 1)) && earlier=$(passed_count)
      KITE_KVM_PART=$part KITE_KVM_RESUME=$((attempt > 1)) \
        run_ctest scripts/kvm-vm/run-in-kvm-vm.sh "$repo" -- "${kvm_tests[@]}" || rc=$?
      ((rc == 124 || rc == 125)) && ((attempt < 3)) && { echo "== the VM failed (status $rc): again, from where it stopped"; continue; }
      break
    done
    # Tests that passed in a VM that then wedged: their ctest never printed its total line.
    n=$earlier
    ((rc == 124 || rc == 125)) && n=$(passed_count)
    ((n > 0)) && echo "$n tests passed, 0 tests failed out of $n (in a VM that wedged)" >> "$summary"
    ((rc == 0)) || status=1
  done
else
  echo "== no /dev/kvm and no nested VM: KVM tests report skipped (they fail under CI=true)"
  run_ctest "${kvm_tests[@]}" || status=1
fi

# One closing line over every ctest run above ("N passed, N failed, N skipped").
total=0 failed=0 skipped=0
while read -r f t; do
  failed=$((failed + f)) total=$((total + t))
done < <(sed -nE 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' "$summary")
while read -r _ n; do skipped=$((skipped + n)); done < <(grep '^skipped ' "$summary")
echo "$((total - failed - skipped)) passed, $failed failed, $skipped skipped"
exit "$status"
