// The host's pool of 2 MiB huge pages for tests that need some: a HugePagePool adds the pages a
// test uses for its lifetime and gives them back (root needed; one user at a time through a
// lock file, since tests run in parallel). Without root, KITE_REQUIRE_HUGE_PAGES skips the test,
// and fails it under CI=true, as the /dev/kvm and oracle-tool policies do.
#pragma once

#include <cstdint>
#include <string>

#include "testing/kvm_required.h"

namespace kite::testing {

// A /proc/meminfo field (in pages or kB, as the file gives it); 0 when absent.
uint64_t MemInfo(const std::string& field);

class HugePagePool {
 public:
  explicit HugePagePool(uint64_t pages);
  ~HugePagePool();
  HugePagePool(const HugePagePool&) = delete;
  HugePagePool& operator=(const HugePagePool&) = delete;
  bool ok() const { return ok_; }

 private:
  uint64_t original_ = 0;
  int lock_ = -1;
  bool ok_ = false;
};

}  // namespace kite::testing

#define KITE_REQUIRE_HUGE_PAGES(pool)                                                          \
  do {                                                                                         \
    if (!(pool).ok()) {                                                                        \
      if (::kite::testing::RunningInCi()) FAIL() << "CI=true but no 2 MiB pages can be added"; \
      GTEST_SKIP() << "skipped: cannot add 2 MiB pages to the host pool (root needed)";        \
    }                                                                                          \
  } while (0)
