// qmp::Framer: the byte stream of a QMP connection split into JSON texts (BAD_INPUTS.md C1,
// C3, C4, C7; QMP's single quotes and parser recovery).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmm/control/qmp_framer.h"

namespace kite::qmp {
namespace {

std::vector<Frame> FeedAll(Framer& framer, std::string_view bytes) {
  std::vector<Frame> out;
  framer.Feed(bytes, &out);
  return out;
}

TEST(Framer, TwoObjectsInOneChunk_TwoTexts) {
  Framer framer;
  auto frames = FeedAll(framer, R"({"execute":"a"}  {"execute":"b"})");
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].text, R"({"execute":"a"})");
  EXPECT_EQ(frames[1].text, R"({"execute":"b"})");
  EXPECT_FALSE(framer.pending());
}

TEST(Framer, SplitAtEveryByteBoundary_SameTexts) {
  const std::string input =
      "{\"execute\": \"x\", \"arguments\": {\"a\": [1, {\"b\": \"}]\\\"\"}]}}\r\n[2]\n";
  for (size_t cut = 0; cut <= input.size(); ++cut) {
    Framer framer;
    std::vector<Frame> frames;
    framer.Feed(input.substr(0, cut), &frames);
    framer.Feed(input.substr(cut), &frames);
    ASSERT_EQ(frames.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(frames[0].text, input.substr(0, input.find("\r\n"))) << "cut at " << cut;
    EXPECT_EQ(frames[1].text, "[2]");
  }
}

TEST(Framer, OneByteChunks_OneText) {
  const std::string input = R"({"execute":"query-status","id":{"x":[1,2]}})";
  Framer framer;
  std::vector<Frame> frames;
  for (size_t i = 0; i < input.size(); ++i) {
    framer.Feed(input.substr(i, 1), &frames);
    if (i + 1 < input.size()) {
      EXPECT_TRUE(frames.empty());
      EXPECT_TRUE(framer.pending());
    }
  }
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].text, input);
}

TEST(Framer, BracketsInsideStrings_NotCounted) {
  Framer framer;
  auto frames = FeedAll(framer, R"({"a":"{[{[", "b":"\"}"})");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].text, R"({"a":"{[{[", "b":"\"}"})");
}

TEST(Framer, SingleQuotes_RewrittenAsDoubleQuotes) {
  Framer framer;
  auto frames = FeedAll(framer, R"({'execute': 'query-status', 'id': 'it\'s "q"'})");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].text, R"({"execute": "query-status", "id": "it's \"q\""})");
}

TEST(Framer, WhitespaceBetweenTexts_Skipped) {
  Framer framer;
  auto frames = FeedAll(framer, " \r\n\t ");
  EXPECT_TRUE(frames.empty());
  EXPECT_FALSE(framer.pending());
}

TEST(Framer, ControlCharacter_ResetsWithStrayError) {
  Framer framer;
  auto frames = FeedAll(framer, std::string("{\"execute\": \x01{\"execute\":\"b\"}"));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].error, "JSON parse error, stray '\x01'");
  EXPECT_EQ(frames[1].text, R"({"execute":"b"})");
}

TEST(Framer, ByteFF_ResetsInsideString) {
  Framer framer;
  auto frames = FeedAll(framer, "{\"execute\": \"abc\xff{}");
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].error, "JSON parse error, stray '\xEF\xBF\xBD'");
  EXPECT_EQ(frames[1].text, "{}");
}

TEST(Framer, NonJsonBytes_BecomeATextTheParserRefuses) {
  Framer framer;
  auto frames = FeedAll(framer, "hello {}");
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].text, "hello");
  EXPECT_EQ(frames[1].text, "{}");
}

TEST(Framer, StrayClosingBracket_OwnText) {
  Framer framer;
  auto frames = FeedAll(framer, "}");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].text, "}");
}

TEST(Framer, InvalidUtf8_PassedThroughForTheParser) {
  Framer framer;
  auto frames = FeedAll(framer, "{\"execute\": \"query-\xc3\x28\"}");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(frames[0].error.empty());
}

TEST(Framer, HundredThousandBrackets_DepthErrorOnceNoBuffering) {
  Framer framer;
  auto frames = FeedAll(framer, std::string(100000, '['));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].error, "JSON nesting depth limit exceeded (limit 64)");
  EXPECT_TRUE(framer.pending());
  EXPECT_FALSE(framer.failed());
  // Closing them all ends the skipped text; the stream goes on.
  frames = FeedAll(framer, std::string(100000, ']') + "{}");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].text, "{}");
}

TEST(Framer, DepthAtLimit_Accepted) {
  Framer framer;
  auto frames = FeedAll(framer, std::string(64, '[') + std::string(64, ']'));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(frames[0].error.empty());
}

TEST(Framer, MessageAtSizeLimit_ErrorAndFailed) {
  Framer framer(FramerLimits{.max_message = 100, .max_depth = 64});
  std::string big = "{\"a\":\"" + std::string(200, 'x') + "\"}";
  auto frames = FeedAll(framer, big + "{}");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_NE(frames[0].error.find("too long"), std::string::npos);
  EXPECT_TRUE(framer.failed());
  frames = FeedAll(framer, "{}");
  EXPECT_TRUE(frames.empty());
}

TEST(Framer, MessageJustUnderLimit_Accepted) {
  Framer framer(FramerLimits{.max_message = 10, .max_depth = 64});
  auto frames = FeedAll(framer, "{\"a\":\"xx\"}");  // 10 bytes
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(frames[0].error.empty());
  EXPECT_FALSE(framer.failed());
}

TEST(Framer, TopLevelNumber_EndsAtDelimiter) {
  Framer framer;
  auto frames = FeedAll(framer, "12");
  EXPECT_TRUE(frames.empty());
  frames = FeedAll(framer, " ");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].text, "12");
}

}  // namespace
}  // namespace kite::qmp
