// The /dev/kvm policy for tests: a test that needs KVM calls KITE_REQUIRE_KVM() first.
// Where /dev/kvm is missing it is skipped with a message saying so, except under CI=true,
// where a missing /dev/kvm fails the test: CI must never count a skipped KVM test as a pass.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace kite::testing {

// Empty when /dev/kvm can be opened read-write; otherwise why not.
std::string KvmUnavailableReason();
bool RunningInCi();

}  // namespace kite::testing

#define KITE_REQUIRE_KVM()                                                         \
  do {                                                                             \
    std::string kite_kvm_reason_ = ::kite::testing::KvmUnavailableReason();        \
    if (!kite_kvm_reason_.empty()) {                                               \
      if (::kite::testing::RunningInCi()) {                                        \
        FAIL() << "CI=true but " << kite_kvm_reason_ << ": KVM tests must run in CI"; \
      }                                                                            \
      GTEST_SKIP() << "skipped: " << kite_kvm_reason_;                             \
    }                                                                              \
  } while (0)
