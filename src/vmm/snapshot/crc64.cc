// CRC-64/XZ, table-driven. See crc64.h.
#include "vmm/snapshot/crc64.h"

#include <array>

namespace kite::snapshot {
namespace {

constexpr uint64_t kPolyReflected = 0xC96C5795D7870F42;  // 0x42F0E1EBA9EA3693 bit-reversed

constexpr std::array<uint64_t, 256> MakeTable() {
  std::array<uint64_t, 256> table{};
  for (uint64_t i = 0; i < 256; ++i) {
    uint64_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ kPolyReflected : crc >> 1;
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint64_t, 256> kTable = MakeTable();

}  // namespace

uint64_t Crc64Update(uint64_t crc, std::span<const uint8_t> data) {
  for (uint8_t byte : data) crc = kTable[(crc ^ byte) & 0xff] ^ (crc >> 8);
  return crc;
}

}  // namespace kite::snapshot
