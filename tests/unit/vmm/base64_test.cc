// Base64: RFC 4648 test vectors and the strict decoder's refusals.
#include "vmm/snapshot/base64.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kite::snapshot {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> Bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(Bytes(plain)), encoded);
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded) << encoded;
    EXPECT_EQ(*decoded, Bytes(plain));
  }
}

TEST(Base64, AllByteValuesRoundTrip) {
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  std::string text = Base64Encode(all);
  EXPECT_THAT(text, HasSubstr("+"));
  EXPECT_THAT(text, HasSubstr("/"));
  EXPECT_EQ(*Base64Decode(text), all);
}

TEST(Base64, Decode_BadLength) {
  EXPECT_THAT(Base64Decode("Zm9").error().message(), HasSubstr("multiple of 4"));
}

TEST(Base64, Decode_BadCharacter) {
  EXPECT_THAT(Base64Decode("Zm9v*mFy").error().message(), HasSubstr("offset 4"));
  EXPECT_FALSE(Base64Decode("Zm9\nYmFy"));
}

TEST(Base64, Decode_PaddingOnlyAtTheEnd) {
  EXPECT_FALSE(Base64Decode("Zg==Zm9v"));
  EXPECT_FALSE(Base64Decode("Z==="));
  EXPECT_FALSE(Base64Decode("===="));
  EXPECT_FALSE(Base64Decode("Zm=v"));
}

TEST(Base64, Decode_NonCanonicalBitsRefused) {
  EXPECT_THAT(Base64Decode("Zh==").error().message(), HasSubstr("non-canonical"));
  EXPECT_FALSE(Base64Decode("Zm9="));
}

}  // namespace
}  // namespace kite::snapshot
