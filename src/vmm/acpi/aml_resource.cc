// Resource descriptor encodings, ACPI 6.5 §6.4 (small items §6.4.2, large items §6.4.3).
#include "vmm/acpi/aml_resource.h"

namespace kite::acpi::aml {
namespace {

constexpr uint8_t kIrqTag = 0x22;            // small item 0x04, length 2 (no flags byte)
constexpr uint8_t kIoPortTag = 0x47;         // small item 0x08, length 7
constexpr uint8_t kEndTag = 0x79;            // small item 0x0f, length 1
constexpr uint8_t kMemory32FixedTag = 0x86;  // large item 0x06
constexpr uint8_t kExtendedIrqTag = 0x89;    // large item 0x09

void Le16(Bytes& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

void Le32(Bytes& out, uint32_t v) {
  Le16(out, v & 0xffff);
  Le16(out, v >> 16);
}

}  // namespace

Bytes IoPort(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  Bytes out{kIoPortTag, 0x01};  // information: bit 0 = decodes 16 address bits
  Le16(out, min);
  Le16(out, max);
  out.push_back(alignment);
  out.push_back(length);
  return out;
}

Bytes IrqNoFlags(uint8_t irq) {
  Bytes out{kIrqTag};
  Le16(out, irq < 16 ? (1u << irq) : 0);  // a mask of ISA IRQs 0-15
  return out;
}

Bytes Memory32Fixed(bool read_write, uint32_t base, uint32_t length) {
  Bytes out{kMemory32FixedTag};
  Le16(out, 9);  // length of the data after the 3-byte header
  out.push_back(read_write ? 1 : 0);
  Le32(out, base);
  Le32(out, length);
  return out;
}

Bytes Interrupt(InterruptFlags flags, uint32_t gsi) {
  Bytes out{kExtendedIrqTag};
  Le16(out, 6);  // flags, table length, one 32-bit interrupt number
  // Interrupt vector flags: bit 0 consumer, bit 1 edge, bit 2 active low, bit 3 shared.
  out.push_back(static_cast<uint8_t>((flags.consumer ? 0x01 : 0) | (flags.edge ? 0x02 : 0) |
                                     (flags.active_low ? 0x04 : 0) | (flags.shared ? 0x08 : 0)));
  out.push_back(1);  // interrupt table length
  Le32(out, gsi);
  return out;
}

Bytes ResourceTemplate(const std::vector<Bytes>& descriptors) {
  Bytes data;
  for (const Bytes& d : descriptors) Append(data, d);
  data.push_back(kEndTag);
  data.push_back(0x00);  // checksum 0: "the resource data is treated as if it checksummed"
  return Buffer(data);
}

}  // namespace kite::acpi::aml
