// ACPI table header, checksum and field writers (see sdt.h).
#include "vmm/acpi/sdt.h"

#include <cstring>

namespace kite::acpi {

uint8_t Checksum(std::span<const uint8_t> data) {
  uint8_t sum = 0;
  for (uint8_t b : data) sum = static_cast<uint8_t>(sum + b);
  return static_cast<uint8_t>(0x100 - sum);
}

void Put8(std::vector<uint8_t>& t, size_t off, uint8_t v) {
  t.at(off) = v;
}

void Put16(std::vector<uint8_t>& t, size_t off, uint16_t v) {
  for (size_t i = 0; i < 2; ++i) t.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
}

void Put32(std::vector<uint8_t>& t, size_t off, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) t.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
}

void Put64(std::vector<uint8_t>& t, size_t off, uint64_t v) {
  for (size_t i = 0; i < 8; ++i) t.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
}

void PutChars(std::vector<uint8_t>& t, size_t off, std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) t.at(off + i) = static_cast<uint8_t>(s[i]);
}

std::vector<uint8_t> NewSdt(std::string_view signature, uint32_t length, uint8_t revision) {
  std::vector<uint8_t> t(length, 0);
  PutChars(t, 0, signature.substr(0, 4));
  Put32(t, 4, length);
  Put8(t, 8, revision);
  // 9: checksum, set by FinishSdt().
  PutChars(t, 10, std::string_view(kOemId, 6));
  PutChars(t, 16, std::string_view(kOemTableId, 8));
  Put32(t, 24, kOemRevision);
  PutChars(t, 28, std::string_view(kCreatorId, 4));
  Put32(t, 32, kCreatorRevision);
  return t;
}

void FinishSdt(std::vector<uint8_t>& t) {
  Put32(t, 4, static_cast<uint32_t>(t.size()));
  Put8(t, 9, 0);
  Put8(t, 9, Checksum(t));
}

void PutGas(std::vector<uint8_t>& t, size_t off, const GenericAddress& gas) {
  Put8(t, off, gas.space_id);
  Put8(t, off + 1, gas.bit_width);
  Put8(t, off + 2, gas.bit_offset);
  Put8(t, off + 3, gas.access_size);
  Put64(t, off + 4, gas.address);
}

}  // namespace kite::acpi
