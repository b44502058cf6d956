// CRC-64/XZ against its published check value and its streaming form.
#include "vmm/snapshot/crc64.h"

#include <gtest/gtest.h>

#include <string_view>

namespace kite::snapshot {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Crc64Test, CheckValue_MatchesCrc64Xz) {
  // The catalogue's check value for CRC-64/XZ (reveng.sourceforge.io/crc-catalogue).
  EXPECT_EQ(Crc64(Bytes("123456789")), 0x995DC9BBDF1939FAull);
}

TEST(Crc64Test, Empty_IsZero) {
  EXPECT_EQ(Crc64({}), 0u);
}

TEST(Crc64Test, Update_InPieces_EqualsWhole) {
  std::string_view text = "The quick brown fox jumps over the lazy dog";
  uint64_t crc = kCrc64Init;
  crc = Crc64Update(crc, Bytes(text.substr(0, 10)));
  crc = Crc64Update(crc, Bytes(text.substr(10)));
  EXPECT_EQ(Crc64Final(crc), Crc64(Bytes(text)));
}

}  // namespace
}  // namespace kite::snapshot
