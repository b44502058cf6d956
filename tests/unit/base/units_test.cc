#include "base/units.h"

#include <gtest/gtest.h>

namespace kite {
namespace {

TEST(ParseSize, Suffixes) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("128M"), 128ull << 20);
  EXPECT_EQ(*ParseSize("2G"), 2ull << 30);
  EXPECT_EQ(*ParseSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseSize("64k"), 64ull << 10);
  EXPECT_EQ(*ParseSize("1.5G"), 3ull << 29);
  EXPECT_EQ(*ParseSize("512B"), 512u);
}

TEST(ParseSize, Garbage_Refused) {
  for (const char* bad : {"", "M", "-1", "12X", "1.G", "0.5", "1 G", "18446744073709551616",
                          "16E", "99999999999T"}) {
    auto r = ParseSize(bad);
    EXPECT_FALSE(r) << bad;
  }
}

TEST(FormatSize, LikeQemuImg) {
  EXPECT_EQ(FormatSize(512), "512 B");
  EXPECT_EQ(FormatSize(128ull << 20), "128 MiB");
  EXPECT_EQ(FormatSize(3ull << 29), "1.5 GiB");
}

}  // namespace
}  // namespace kite
