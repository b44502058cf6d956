// PciConfigSpace: type-0 header, write masks, BAR sizing, capability list. See pci_config.h.
#include "devices/pci/pci_config.h"

#include <bit>
#include <string>

#include "base/units.h"

namespace kite::pci {
namespace {

constexpr uint32_t kBarMemory64 = 0x4;  // bits 2:1 = 10b: 64-bit memory BAR
constexpr uint32_t kBarPrefetchable = 0x8;
constexpr uint32_t kBarFlagBits = 0xf;

}  // namespace

PciConfigSpace::PciConfigSpace(const PciIdentity& id) {
  Set(kVendorId, 2, id.vendor_id);
  Set(kDeviceId, 2, id.device_id);
  Set(kRevisionId, 1, id.revision);
  Set(kClassCode, 1, id.class_code & 0xff);
  Set(kClassCode + 1, 2, (id.class_code >> 8) & 0xffff);
  Set(kHeaderType, 1, 0);  // type 0, single function
  Set(kSubsystemVendorId, 2, id.subsystem_vendor_id);
  Set(kSubsystemId, 2, id.subsystem_id);
  // Command: memory space, bus master, parity and SERR enables, INTx disable. No I/O BARs,
  // so the I/O space bit stays 0.
  uint16_t command_mask =
      kCommandMemory | kCommandBusMaster | kCommandParity | kCommandSerr | kCommandIntxDisable;
  writable_[kCommand] = command_mask & 0xff;
  writable_[kCommand + 1] = command_mask >> 8;
  writable_[kCacheLineSize] = 0xff;
  writable_[kLatencyTimer] = 0xff;
  writable_[kInterruptLine] = 0xff;  // a scratch register for the OS
}

Result<void> PciConfigSpace::SetBar(int index, const BarSpec& spec, uint64_t address) {
  int regs = spec.is_64bit ? 2 : 1;
  if (index < 0 || index + regs > kNumBars)
    return Err("BAR " + std::to_string(index) + ": no such register");
  if (bar_taken_[index] || (regs == 2 && bar_taken_[index + 1])) {
    return Err("BAR " + std::to_string(index) + " is taken");
  }
  if (spec.size < 16 || !std::has_single_bit(spec.size) ||
      (!spec.is_64bit && spec.size > 0x80000000ull) || address % spec.size != 0) {
    return Err("BAR " + std::to_string(index) + ": size 0x" + ToHex(spec.size) + " at 0x" +
               ToHex(address) + " is not a naturally aligned power of two");
  }
  bars_[index] = spec;
  bar_taken_[index] = true;
  uint16_t reg = kBar0 + 4 * index;
  uint32_t flags = (spec.is_64bit ? kBarMemory64 : 0) | (spec.prefetchable ? kBarPrefetchable : 0);
  uint64_t mask = ~(spec.size - 1);
  Set(reg, 4, static_cast<uint32_t>(address & mask) | flags);
  uint32_t low_mask = static_cast<uint32_t>(mask) & ~kBarFlagBits;
  for (int i = 0; i < 4; ++i) writable_[reg + i] = static_cast<uint8_t>(low_mask >> (8 * i));
  if (spec.is_64bit) {
    bar_taken_[index + 1] = true;
    Set(reg + 4, 4, static_cast<uint32_t>(address >> 32));
    uint32_t high_mask = static_cast<uint32_t>(mask >> 32);
    for (int i = 0; i < 4; ++i) writable_[reg + 4 + i] = static_cast<uint8_t>(high_mask >> (8 * i));
  }
  return {};
}

Result<uint8_t> PciConfigSpace::AddCapability(std::span<const uint8_t> body,
                                              std::span<const uint8_t> writable) {
  if (body.size() < 2 || writable.size() > body.size() ||
      next_capability_ + body.size() > kConfigSize) {
    return Err("capability of " + std::to_string(body.size()) + " bytes does not fit");
  }
  auto offset = static_cast<uint8_t>(next_capability_);
  for (size_t i = 0; i < body.size(); ++i) {
    bytes_[offset + i] = body[i];
    writable_[offset + i] = i < writable.size() ? writable[i] : 0;
  }
  bytes_[offset + 1] = 0;  // the end of the list, until another one follows
  writable_[offset + 1] = 0;
  if (last_capability_ == 0) {
    Set(kCapabilitiesPointer, 1, offset);
    Set(kStatus, 2, Get(kStatus, 2) | kStatusCapabilities);
  } else {
    bytes_[last_capability_ + 1] = offset;
  }
  last_capability_ = offset;
  next_capability_ = static_cast<uint16_t>((offset + body.size() + 3) & ~size_t{3});
  return offset;
}

bool PciConfigSpace::ValidAccess(uint16_t offset, size_t size) {
  return (size == 1 || size == 2 || size == 4) && offset % size == 0 &&
         offset + size <= kConfigSize;
}

bool PciConfigSpace::Read(uint16_t offset, std::span<uint8_t> data) const {
  if (!ValidAccess(offset, data.size())) {
    for (uint8_t& b : data) b = 0xff;
    return false;
  }
  for (size_t i = 0; i < data.size(); ++i) data[i] = bytes_[offset + i];
  return true;
}

bool PciConfigSpace::Write(uint16_t offset, std::span<const uint8_t> data) {
  if (!ValidAccess(offset, data.size())) return false;
  for (size_t i = 0; i < data.size(); ++i) {
    uint8_t mask = writable_[offset + i];
    bytes_[offset + i] = static_cast<uint8_t>((bytes_[offset + i] & ~mask) | (data[i] & mask));
  }
  return true;
}

uint32_t PciConfigSpace::Get(uint16_t offset, size_t size) const {
  uint32_t value = 0;
  for (size_t i = 0; i < size && offset + i < kConfigSize; ++i) {
    value |= uint32_t{bytes_[offset + i]} << (8 * i);
  }
  return value;
}

void PciConfigSpace::Set(uint16_t offset, size_t size, uint32_t value) {
  for (size_t i = 0; i < size && offset + i < kConfigSize; ++i) {
    bytes_[offset + i] = static_cast<uint8_t>(value >> (8 * i));
  }
}

uint64_t PciConfigSpace::bar_size(int index) const {
  return index >= 0 && index < kNumBars ? bars_[index].size : 0;
}

std::optional<uint64_t> PciConfigSpace::bar_address(int index) const {
  uint64_t size = bar_size(index);
  if (size == 0) return std::nullopt;
  uint16_t reg = kBar0 + 4 * index;
  uint64_t mask = ~(size - 1);
  uint32_t low = Get(reg, 4) & ~kBarFlagBits;
  uint32_t low_mask = static_cast<uint32_t>(mask) & ~kBarFlagBits;
  // Either half still holding the all-ones of the sizing protocol names no real range.
  if (low_mask != 0 && (low & low_mask) == low_mask) return std::nullopt;
  if (!bars_[index].is_64bit) return low;
  uint32_t high = Get(reg + 4, 4);
  if (high == static_cast<uint32_t>(mask >> 32)) return std::nullopt;
  return uint64_t{high} << 32 | low;
}

Result<void> PciConfigSpace::Restore(std::span<const uint8_t> bytes) {
  if (bytes.size() != kConfigSize) {
    return Err("PCI configuration space of " + std::to_string(bytes.size()) + " bytes, expected " +
               std::to_string(kConfigSize));
  }
  for (size_t i = 0; i < kConfigSize; ++i) {
    if ((bytes[i] ^ bytes_[i]) & ~writable_[i]) {
      return Err("PCI configuration byte 0x" + ToHex(i) +
                 " differs from this device's in a read-only bit");
    }
  }
  for (size_t i = 0; i < kConfigSize; ++i) bytes_[i] = bytes[i];
  return {};
}

}  // namespace kite::pci
