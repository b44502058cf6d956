#include "base/log.h"

#include <gtest/gtest.h>

namespace kite {
namespace {

TEST(RateLimit, AllowsBurstThenSuppresses) {
  RateLimit limit(3, 60000);
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += limit.Allow() ? 1 : 0;
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(limit.suppressed(), 97u);
}

}  // namespace
}  // namespace kite
