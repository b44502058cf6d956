// The state file container: round trip, and refusal of every truncation, every single-bit
// flip, a wrong magic and other versions (BAD_INPUTS.md F12).
#include "vmm/snapshot/snapshot_file.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/unique_fd.h"
#include "testing/temp_dir.h"
#include "vmm/snapshot/crc64.h"

namespace kite::snapshot {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

json SmallBody() {
  return {{"config", {{"cpus", 2}}}, {"vcpus", json::array({{{"rip", 4096}}})}, {"x", "é"}};
}

std::span<const uint8_t> Span(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Re-seals `bytes` with a correct CRC after an edit of the header or body.
void Reseal(std::string& bytes) {
  uint64_t crc = Crc64(Span(bytes).first(bytes.size() - kStateCrcSize));
  for (int i = 0; i < 8; ++i) bytes[bytes.size() - 8 + i] = static_cast<char>(crc >> (8 * i));
}

TEST(StateFileTest, WriteThenRead_RoundTrips) {
  testing::TempDir dir;
  UniqueFd dfd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(WriteStateFile(dfd.get(), SmallBody()));
  auto body = ReadStateFile(dir.File(kStateFileName));
  ASSERT_TRUE(body) << body.error().message();
  EXPECT_EQ(*body, SmallBody());
}

TEST(StateFileTest, Encode_HeaderFields) {
  std::string bytes = EncodeStateFile(SmallBody());
  EXPECT_EQ(bytes.substr(0, 8), "KITESNAP");
  EXPECT_EQ(bytes[8], 1);  // major 1, little-endian
  EXPECT_EQ(bytes[9], 0);
  EXPECT_EQ(bytes[10], 0);  // minor 0
  EXPECT_EQ(bytes[12], static_cast<char>(bytes.size() - kStateHeaderSize - kStateCrcSize));
}

TEST(StateFileTest, WriteStateFile_ExistingFile_Refused) {
  testing::TempDir dir;
  testing::WriteFile(dir.File(kStateFileName), "old");
  UniqueFd dfd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
  EXPECT_FALSE(WriteStateFile(dfd.get(), SmallBody()));
  EXPECT_EQ(testing::ReadFile(dir.File(kStateFileName)), "old");
}

TEST(StateFileTest, TruncatedAtEveryOffset_Refused) {
  std::string bytes = EncodeStateFile(SmallBody());
  for (size_t len = 0; len < bytes.size(); ++len) {
    auto r = DecodeStateFile(Span(bytes).first(len), "snap/state");
    ASSERT_FALSE(r) << "length " << len;
    EXPECT_THAT(r.error().message(), HasSubstr("snap/state")) << len;
    if (len < kStateHeaderSize + kStateCrcSize) {
      EXPECT_THAT(r.error().message(), HasSubstr("too short to contain")) << len;
    } else {
      EXPECT_THAT(r.error().message(), HasSubstr("truncated or corrupt")) << len;
    }
  }
}

TEST(StateFileTest, EverySingleBitFlip_Refused) {
  const std::string good = EncodeStateFile(SmallBody());
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bytes = good;
      bytes[i] = static_cast<char>(bytes[i] ^ (1 << bit));
      ASSERT_FALSE(DecodeStateFile(Span(bytes), "state")) << "byte " << i << " bit " << bit;
    }
  }
}

TEST(StateFileTest, TrailingGarbage_Refused) {
  std::string bytes = EncodeStateFile(SmallBody()) + "x";
  EXPECT_FALSE(DecodeStateFile(Span(bytes), "state"));
}

TEST(StateFileTest, WrongMagic_Refused) {
  std::string bytes = EncodeStateFile(SmallBody());
  bytes[0] = 'Q';
  Reseal(bytes);
  auto r = DecodeStateFile(Span(bytes), "state");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("bad magic"));
}

TEST(StateFileTest, OtherMajor_Refused) {
  for (uint8_t major : {0, 2}) {
    std::string bytes = EncodeStateFile(SmallBody());
    bytes[8] = static_cast<char>(major);
    Reseal(bytes);
    auto r = DecodeStateFile(Span(bytes), "state");
    ASSERT_FALSE(r);
    EXPECT_THAT(r.error().message(), HasSubstr("version " + std::to_string(major) + ".0"));
  }
}

TEST(StateFileTest, NewerMinor_Refused) {
  std::string bytes = EncodeStateFile(SmallBody());
  bytes[10] = static_cast<char>(kFormatMinor + 1);
  Reseal(bytes);
  auto r = DecodeStateFile(Span(bytes), "state");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("is not supported"));
}

std::string Seal(const std::string& body) {
  std::string bytes = EncodeStateFile(json::object());
  bytes = bytes.substr(0, kStateHeaderSize) + body + std::string(kStateCrcSize, '\0');
  for (int i = 0; i < 8; ++i) bytes[12 + i] = static_cast<char>(body.size() >> (8 * i));
  Reseal(bytes);
  return bytes;
}

TEST(StateFileTest, BodyNotJsonOrNotObject_Refused) {
  EXPECT_THAT(DecodeStateFile(Span(Seal("{\"a\":")), "s").error().message(),
              HasSubstr("not valid JSON"));
  EXPECT_THAT(DecodeStateFile(Span(Seal("[1,2]")), "s").error().message(),
              HasSubstr("not a JSON object"));
  EXPECT_TRUE(DecodeStateFile(Span(Seal("{\"a\":\"[[[\"}")), "s"));
}

TEST(StateFileTest, DeepNesting_Refused) {
  std::string deep = "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}";
  auto r = DecodeStateFile(Span(Seal(deep)), "s");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("nested deeper"));
}

TEST(StateFileTest, ReadStateFile_Missing_NamesFile) {
  auto r = ReadStateFile("/nonexistent/kite/state");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("/nonexistent/kite/state"));
}

}  // namespace
}  // namespace kite::snapshot
