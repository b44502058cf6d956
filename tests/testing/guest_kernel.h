// kite's own guest kernel (guest-firmware/linux, docs/GUEST-FIRMWARE.md) for the tests that load
// or boot Linux. Found as guest-firmware/linux/guest-kernel.sh --no-build finds it:
// $KITE_GUEST_KERNEL, else the build cached under ${KITE_CACHE_DIR:-~/.cache/kite}/guest/. A test
// never builds it (minutes): scripts/test.sh does that before running any test. Nothing outside
// the repository and the kite cache is read.
//
// A test that needs it calls KITE_REQUIRE_GUEST_KERNEL(path) with what FindGuestKernel() (or
// FindGuestBzImage()) returned: an empty path skips the test with a message, except under
// CI=true, where it fails (the kvm_required.h policy).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "testing/kvm_required.h"

namespace kite::testing {

// The guest kernel's vmlinux; empty when there is none. Looked up once per process.
std::string FindGuestKernel();
// The bzImage built with it (build-kernel.sh keeps it beside vmlinux); empty when there is none.
std::string FindGuestBzImage();

inline constexpr char kGuestKernelMissing[] =
    "kite's guest kernel is not built (run guest-firmware/linux/guest-kernel.sh, minutes; "
    "scripts/test.sh does; or set KITE_GUEST_KERNEL to a vmlinux with its bzImage beside it)";

}  // namespace kite::testing

#define KITE_REQUIRE_GUEST_KERNEL(path)                                    \
  do {                                                                     \
    if ((path).empty()) {                                                  \
      if (::kite::testing::RunningInCi()) {                                \
        FAIL() << "CI=true but " << ::kite::testing::kGuestKernelMissing;  \
      }                                                                    \
      GTEST_SKIP() << "skipped: " << ::kite::testing::kGuestKernelMissing; \
    }                                                                      \
  } while (0)
