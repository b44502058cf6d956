// CRC-64/XZ (also called CRC-64/GO-ECMA): the ECMA-182 polynomial 0x42F0E1EBA9EA3693, bit
// reflected, initial value and final XOR all ones. Check value: Crc64("123456789") ==
// 0x995DC9BBDF1939FA. The snapshot state file ends with this CRC over everything before it
// (docs/SNAPSHOTS.md "Format"). Table-driven, one byte at a time: a state file is small.
//
//   uint64_t crc = Crc64(bytes);                 // all at once
//   uint64_t c = Crc64Update(kCrc64Init, a);     // or in pieces:
//   c = Crc64Update(c, b);                       //   Crc64Final(c) == Crc64(a ++ b)
#pragma once

#include <cstdint>
#include <span>

namespace kite::snapshot {

inline constexpr uint64_t kCrc64Init = ~uint64_t{0};

// Feeds `data` into a running (not yet finalised) CRC.
uint64_t Crc64Update(uint64_t crc, std::span<const uint8_t> data);
inline uint64_t Crc64Final(uint64_t crc) {
  return ~crc;
}
inline uint64_t Crc64(std::span<const uint8_t> data) {
  return Crc64Final(Crc64Update(kCrc64Init, data));
}

}  // namespace kite::snapshot
