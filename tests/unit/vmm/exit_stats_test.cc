// --stats exit counters.
#include "vmm/exit_stats.h"

#include <gtest/gtest.h>

namespace kite {
namespace {

TEST(ExitStats, CountsByKindAndPort) {
  ExitStats stats;
  stats.Count(exit::IoOut{0x3f8, 1, 1, {}});
  stats.Count(exit::IoOut{0x3f8, 1, 1, {}});
  stats.Count(exit::IoIn{0x3fd, 1, 1, {}});
  stats.Count(exit::MmioWrite{0xd0000050, {}});
  EXPECT_EQ(stats.total(), 4u);
  EXPECT_EQ(stats.port_count(0x3f8), 2u);
  EXPECT_EQ(stats.port_count(0x3fd), 1u);
  EXPECT_EQ(stats.port_count(0x80), 0u);
  EXPECT_EQ(stats.mmio_count(0xd0000050), 1u);
}

TEST(ExitStats, MergeAddsUp) {
  ExitStats a, b;
  a.Count(exit::IoOut{0x3f8, 1, 1, {}});
  b.Count(exit::IoOut{0x3f8, 1, 1, {}});
  b.Count(exit::Shutdown{});
  b.CountFallback();
  a.Merge(b);
  EXPECT_EQ(a.total(), 3u);
  EXPECT_EQ(a.port_count(0x3f8), 2u);
  EXPECT_EQ(a.fallbacks(), 1u);
}

TEST(ExitStats, FormatNamesKindsAndTopPorts) {
  ExitStats stats;
  for (int i = 0; i < 3; ++i) stats.Count(exit::IoOut{0x3f8, 1, 1, {}});
  stats.Count(exit::IoOut{0x600, 1, 1, {}});
  std::string text = stats.Format();
  EXPECT_NE(text.find("VM exits: 4"), std::string::npos) << text;
  EXPECT_NE(text.find("io-out: 4"), std::string::npos) << text;
  EXPECT_NE(text.find("0x3f8=3 0x600=1"), std::string::npos) << text;
}

TEST(ExitStats, TopN_HighestFirstTiesByKey) {
  auto top = TopN({{5, 1}, {1, 9}, {3, 9}, {2, 4}}, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 1u);
  EXPECT_EQ(top[1].first, 3u);
  EXPECT_EQ(top[2].first, 2u);
}

}  // namespace
}  // namespace kite
