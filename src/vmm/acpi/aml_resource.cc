// Resource descriptor encodings, ACPI 6.5 §6.4 (small items §6.4.2, large items §6.4.3).
#include "vmm/acpi/aml_resource.h"

namespace kite::acpi::aml {
namespace {

constexpr uint8_t kIrqTag = 0x22;            // small item 0x04, length 2 (no flags byte)
constexpr uint8_t kIoPortTag = 0x47;         // small item 0x08, length 7
constexpr uint8_t kEndTag = 0x79;            // small item 0x0f, length 1
constexpr uint8_t kMemory32FixedTag = 0x86;  // large item 0x06
constexpr uint8_t kExtendedIrqTag = 0x89;    // large item 0x09
constexpr uint8_t kDWordAddressTag = 0x87;   // large item 0x07
constexpr uint8_t kWordAddressTag = 0x88;    // large item 0x08
constexpr uint8_t kQWordAddressTag = 0x8a;   // large item 0x0a

// Address space descriptors: resource type, general flags, type-specific flags.
constexpr uint8_t kAddressMemory = 0;
constexpr uint8_t kAddressBusNumber = 2;
constexpr uint8_t kProducerMinMaxFixed = 0x0c;  // bit 3 _MAF, bit 2 _MIF, bit 0 = 0: producer
constexpr uint8_t kMemoryNonCacheableReadWrite = 0x01;

void Le16(Bytes& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

void Le32(Bytes& out, uint32_t v) {
  Le16(out, v & 0xffff);
  Le16(out, v >> 16);
}

void Le64(Bytes& out, uint64_t v) {
  Le32(out, static_cast<uint32_t>(v));
  Le32(out, static_cast<uint32_t>(v >> 32));
}

// The three bytes after an address descriptor's length: type, general flags, type flags.
void AddressHeader(Bytes& out, uint8_t type, uint8_t type_flags) {
  out.push_back(type);
  out.push_back(kProducerMinMaxFixed);
  out.push_back(type_flags);
}

}  // namespace

Bytes WordBusNumber(uint16_t first, uint16_t last) {
  Bytes out{kWordAddressTag};
  Le16(out, 13);
  AddressHeader(out, kAddressBusNumber, 0);
  for (uint32_t v : {0u, uint32_t{first}, uint32_t{last}, 0u, uint32_t{last} - first + 1}) {
    Le16(out, v);  // granularity, minimum, maximum, translation, length
  }
  return out;
}

Bytes DWordMemory(uint32_t base, uint32_t length) {
  Bytes out{kDWordAddressTag};
  Le16(out, 23);
  AddressHeader(out, kAddressMemory, kMemoryNonCacheableReadWrite);
  for (uint32_t v : {0u, base, base + length - 1, 0u, length}) Le32(out, v);
  return out;
}

Bytes QWordMemory(uint64_t base, uint64_t length) {
  Bytes out{kQWordAddressTag};
  Le16(out, 43);
  AddressHeader(out, kAddressMemory, kMemoryNonCacheableReadWrite);
  for (uint64_t v : {uint64_t{0}, base, base + length - 1, uint64_t{0}, length}) Le64(out, v);
  return out;
}

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
