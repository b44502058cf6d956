// PciConfigSpace: the 256-byte configuration space of a conventional PCI function with a
// type-0 header (PCI Local Bus Specification 3.0, chapter 6): the identification registers,
// the command register, up to six base address registers and a capability list.
//
// Every byte has a write mask: a guest write changes only the masked bits, so read-only
// registers, the BARs' type bits and their size bits follow from the masks alone. BAR sizing
// (6.2.5.1) works the way the spec describes it: the driver writes all ones and reads back the
// size bits as zeros. A 64-bit memory BAR takes two registers (the upper half writable
// whole for BARs below 4 GiB in size). There are no I/O BARs and no expansion ROM (its BAR
// reads 0, which says "none").
//
// Accesses are 1, 2 or 4 bytes, naturally aligned, inside the 256 bytes; anything else reads
// all ones and is dropped on write (counted by the caller). Values are little-endian.
//
// Threads: none of its own; the owning device serialises access.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"

namespace kite::pci {

inline constexpr size_t kConfigSize = 256;
inline constexpr int kNumBars = 6;

// Register offsets (PCI 3.0 6.1, 6.2).
inline constexpr uint16_t kVendorId = 0x00;
inline constexpr uint16_t kDeviceId = 0x02;
inline constexpr uint16_t kCommand = 0x04;
inline constexpr uint16_t kStatus = 0x06;
inline constexpr uint16_t kRevisionId = 0x08;
inline constexpr uint16_t kClassCode = 0x09;  // 3 bytes: prog-if, subclass, class
inline constexpr uint16_t kCacheLineSize = 0x0c;
inline constexpr uint16_t kLatencyTimer = 0x0d;
inline constexpr uint16_t kHeaderType = 0x0e;
inline constexpr uint16_t kBar0 = 0x10;
inline constexpr uint16_t kSubsystemVendorId = 0x2c;
inline constexpr uint16_t kSubsystemId = 0x2e;
inline constexpr uint16_t kRomBar = 0x30;
inline constexpr uint16_t kCapabilitiesPointer = 0x34;
inline constexpr uint16_t kInterruptLine = 0x3c;
inline constexpr uint16_t kInterruptPin = 0x3d;
inline constexpr uint16_t kFirstCapability = 0x40;

inline constexpr uint16_t kCommandMemory = 1u << 1;
inline constexpr uint16_t kCommandBusMaster = 1u << 2;
inline constexpr uint16_t kCommandParity = 1u << 6;
inline constexpr uint16_t kCommandSerr = 1u << 8;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;
inline constexpr uint16_t kStatusCapabilities = 1u << 4;

inline constexpr uint8_t kCapIdMsix = 0x11;
inline constexpr uint8_t kCapIdVendor = 0x09;

struct PciIdentity {
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint8_t revision = 0;
  uint32_t class_code = 0;  // 24 bits: class << 16 | subclass << 8 | prog-if
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
};

// A memory BAR: `size` a power of two, at least 16 bytes (and 4 KiB is what a VMM wants: a
// page of its own). 64-bit BARs use registers `index` and `index + 1`.
struct BarSpec {
  uint64_t size = 0;
  bool is_64bit = true;
  bool prefetchable = false;
};

class PciConfigSpace {
 public:
  explicit PciConfigSpace(const PciIdentity& identity);

  // Declares BAR `index` with its initial address (0: unassigned). Set-up time only; refuses
  // a bad size or index, or registers already taken.
  Result<void> SetBar(int index, const BarSpec& spec, uint64_t address);
  // Appends a capability. `body` is the whole capability from its ID byte; its next pointer
  // (byte 1) is filled in here. `writable[i]` is the write mask of body[i] (shorter: the rest
  // is read-only). Returns the capability's offset. Set-up time only.
  Result<uint8_t> AddCapability(std::span<const uint8_t> body,
                                std::span<const uint8_t> writable = {});

  // Guest accesses (see the header comment). Write returns false for a refused access.
  bool Read(uint16_t offset, std::span<uint8_t> data) const;
  bool Write(uint16_t offset, std::span<const uint8_t> data);
  static bool ValidAccess(uint16_t offset, size_t size);

  // Device-side access to a register, bypassing the write mask (a capability's state).
  uint32_t Get(uint16_t offset, size_t size) const;
  void Set(uint16_t offset, size_t size, uint32_t value);

  uint16_t command() const { return static_cast<uint16_t>(Get(kCommand, 2)); }
  bool memory_enabled() const { return command() & kCommandMemory; }
  // BAR `index`'s size (0: no BAR there) and the address the driver programmed. The address
  // is nullopt while sizing is in progress (all size bits set): it names no real range.
  uint64_t bar_size(int index) const;
  std::optional<uint64_t> bar_address(int index) const;

  // Snapshot: the whole space, and back. Restore refuses bytes whose read-only bits differ
  // from this device's (another device type or layout), naming the first such offset.
  std::vector<uint8_t> Save() const { return {bytes_.begin(), bytes_.end()}; }
  Result<void> Restore(std::span<const uint8_t> bytes);

 private:
  std::array<uint8_t, kConfigSize> bytes_{};
  std::array<uint8_t, kConfigSize> writable_{};
  std::array<BarSpec, kNumBars> bars_{};
  std::array<bool, kNumBars> bar_taken_{};  // also the upper halves of 64-bit BARs
  uint8_t last_capability_ = 0;
  uint16_t next_capability_ = kFirstCapability;
};

}  // namespace kite::pci
