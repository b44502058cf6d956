// EscapeFilter: the Ctrl-A escape state machine of the serial console.
#include "devices/console_escape.h"

#include <gtest/gtest.h>

#include <string>

namespace kite {
namespace {

EscapeResult Feed(EscapeFilter& filter, const std::string& s) {
  return filter.Feed(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}
std::string Guest(const EscapeResult& r) {
  return std::string(r.to_guest.begin(), r.to_guest.end());
}

TEST(EscapeFilterTest, PlainBytes_PassThrough) {
  EscapeFilter filter;
  EscapeResult r = Feed(filter, "ls -l\r\x03");
  EXPECT_EQ(Guest(r), "ls -l\r\x03");
  EXPECT_FALSE(r.quit);
  EXPECT_FALSE(r.help);
}

TEST(EscapeFilterTest, CtrlAX_Quits) {
  EscapeFilter filter;
  EscapeResult r = Feed(filter, "ab\x01xcd");
  EXPECT_TRUE(r.quit);
  EXPECT_EQ(Guest(r), "ab");  // nothing after the quit is consumed
}

TEST(EscapeFilterTest, CtrlACtrlA_SendsOneLiteral) {
  EscapeFilter filter;
  EscapeResult r = Feed(filter, "\x01\x01z");
  EXPECT_EQ(Guest(r), "\x01z");
  EXPECT_FALSE(r.quit);
}

TEST(EscapeFilterTest, EscapeSplitAcrossReads_StillRecognised) {
  EscapeFilter filter;
  EscapeResult first = Feed(filter, "a\x01");
  EXPECT_EQ(Guest(first), "a");
  EXPECT_TRUE(filter.escape_pending());
  EscapeResult second = Feed(filter, "x");
  EXPECT_TRUE(second.quit);
}

TEST(EscapeFilterTest, CtrlAH_Help) {
  EscapeFilter filter;
  EscapeResult r = Feed(filter,
                        "\x01h"
                        "q");
  EXPECT_TRUE(r.help);
  EXPECT_EQ(Guest(r), "q");
}

TEST(EscapeFilterTest, UnknownEscape_BothBytesSwallowed) {
  EscapeFilter filter;
  EscapeResult r = Feed(filter,
                        "\x01"
                        "zq");
  EXPECT_EQ(Guest(r), "q");
  EXPECT_FALSE(r.quit);
  EXPECT_FALSE(filter.escape_pending());
}

TEST(EscapeFilterTest, XWithoutEscape_IsData) {
  EscapeFilter filter;
  EscapeResult r = Feed(filter, "xx");
  EXPECT_EQ(Guest(r), "xx");
  EXPECT_FALSE(r.quit);
}

}  // namespace
}  // namespace kite
