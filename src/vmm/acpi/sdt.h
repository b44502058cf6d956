// Helpers shared by the ACPI table builders (internal to kite_acpi): the 36-byte system
// description table header (ACPI 6.5 §5.2.6), generic address structures (§5.2.3.2), the
// byte checksum, and little-endian field writers.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace kite::acpi {

inline constexpr size_t kSdtHeaderSize = 36;
inline constexpr char kOemId[] = "KITE  ";         // 6 bytes
inline constexpr char kOemTableId[] = "KITEVMM ";  // 8 bytes
inline constexpr uint32_t kOemRevision = 1;
inline constexpr char kCreatorId[] = "KITE";
inline constexpr uint32_t kCreatorRevision = 1;

// The byte that makes `data` sum to zero (mod 256) when stored in a zeroed checksum field.
uint8_t Checksum(std::span<const uint8_t> data);

// Little-endian writers into a table being built (the table must already be long enough).
void Put8(std::vector<uint8_t>& t, size_t off, uint8_t v);
void Put16(std::vector<uint8_t>& t, size_t off, uint16_t v);
void Put32(std::vector<uint8_t>& t, size_t off, uint32_t v);
void Put64(std::vector<uint8_t>& t, size_t off, uint64_t v);
void PutChars(std::vector<uint8_t>& t, size_t off, std::string_view s);

// A zeroed table of `length` bytes with its header filled in (checksum still 0).
std::vector<uint8_t> NewSdt(std::string_view signature, uint32_t length, uint8_t revision);
// Sets the header's length to the table's size, then its checksum.
void FinishSdt(std::vector<uint8_t>& t);

// Generic Address Structure (12 bytes) at `off`.
struct GenericAddress {
  uint8_t space_id;  // 0 = SystemMemory, 1 = SystemIO
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;  // 1 = byte, 2 = word, 3 = dword, 4 = qword
  uint64_t address;
};
void PutGas(std::vector<uint8_t>& t, size_t off, const GenericAddress& gas);

}  // namespace kite::acpi
