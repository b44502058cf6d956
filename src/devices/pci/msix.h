// Msix: the MSI-X capability of a PCI function (PCI Local Bus Specification 3.0, section 6.8.2):
// the vector table and the pending bit array (both in a memory BAR of the device), the
// function's enable and function-mask bits (the capability's Message Control register) and
// the per-vector mask bits.
//
//   * Notify(vector) sends the vector's message when MSI-X is enabled and neither the function
//     nor the vector is masked; while masked it sets the vector's pending bit instead, and the
//     message goes out when the mask is lifted (6.8.3.4). With MSI-X disabled the function
//     would use INTx, which kite does not implement: the notification is counted and dropped.
//   * How a message reaches the CPU is the MsiSink's business (the VMM: one KVM GSI per
//     vector with an MSI route and an irqfd). Route() is called when a vector becomes
//     deliverable (enabled, unmasked) with the address and data it then holds, and again if
//     the driver rewrites an unmasked entry (undefined in the spec; honoured anyway), so the
//     sink never sends a message the driver has not unmasked.
//   * Table accesses: aligned 32-bit or 64-bit; anything else reads 0 and is dropped. Only bit
//     0 (Mask) of Vector Control is writable. The PBA is read-only.
//
// Threads: table/PBA/control accesses on vCPU threads, Notify from any thread (the event
// loop); one mutex guards everything. The sink is called under it: it must take leaf locks
// only.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/result.h"

namespace kite::pci {

struct MsiMessage {
  uint64_t address = 0;
  uint32_t data = 0;
  bool operator==(const MsiMessage&) const = default;
};

class MsiSink {
 public:
  virtual ~MsiSink() = default;
  // `vector` will be sent as `message` from now on.
  virtual void Route(uint16_t vector, const MsiMessage& message) = 0;
  // Sends `vector`'s message (the one last routed).
  virtual void Signal(uint16_t vector) = 0;
};

inline constexpr uint16_t kMsixControlEnable = 1u << 15;
inline constexpr uint16_t kMsixControlFunctionMask = 1u << 14;
inline constexpr uint32_t kMsixEntrySize = 16;
inline constexpr uint32_t kMsixVectorMasked = 1;
inline constexpr uint16_t kMsixMaxVectors = 2048;

struct MsixEntry {
  uint32_t address_low = 0;
  uint32_t address_high = 0;
  uint32_t data = 0;
  uint32_t control = kMsixVectorMasked;  // reset: masked
  bool operator==(const MsixEntry&) const = default;
};

// Snapshot state: the table and pending bits (enable and function mask are in the config
// space's Message Control register).
struct MsixState {
  std::vector<MsixEntry> entries;
  std::vector<bool> pending;
  bool operator==(const MsixState&) const = default;
};

struct MsixStats {
  uint64_t messages = 0;      // sent through the sink
  uint64_t masked = 0;        // notifications left pending by a mask
  uint64_t dropped = 0;       // MSI-X disabled, or no such vector
  uint64_t bad_accesses = 0;  // refused table/PBA accesses
};

class Msix {
 public:
  // `vectors` 1..2048. `sink` may be null (tests that only look at the table).
  Msix(uint16_t vectors, std::shared_ptr<MsiSink> sink);

  // The 12-byte capability for PciConfigSpace::AddCapability, and its write mask (Message
  // Control's enable and function-mask bits). BIR = the BAR index, offsets 8-byte aligned.
  std::vector<uint8_t> Capability(uint8_t table_bar, uint32_t table_offset, uint8_t pba_bar,
                                  uint32_t pba_offset) const;
  static std::vector<uint8_t> CapabilityWriteMask();

  // The Message Control register after a config write (enable, function mask).
  void WriteControl(uint16_t control);
  uint16_t vectors() const { return static_cast<uint16_t>(entries_.size()); }
  bool enabled() const;

  // Table and PBA regions, offsets from their start.
  void TableRead(uint64_t offset, std::span<uint8_t> data);
  void TableWrite(uint64_t offset, std::span<const uint8_t> data);
  void PbaRead(uint64_t offset, std::span<uint8_t> data);
  uint64_t table_size() const { return entries_.size() * kMsixEntrySize; }
  uint64_t pba_size() const { return (entries_.size() + 63) / 64 * 8; }

  // Sends or pends `vector` (see the header comment). Any thread.
  void Notify(uint16_t vector);

  MsixState Save() const;
  // Refuses a state of another size or with unknown Vector Control bits; nothing changes
  // then. `control` is the restored Message Control; deliverable vectors are routed.
  Result<void> Restore(const MsixState& state, uint16_t control);
  MsixStats stats() const;

 private:
  bool DeliverableLocked(uint16_t vector) const;
  MsiMessage MessageLocked(uint16_t vector) const;
  // After a change of masks or of an entry: routes what became deliverable, sends its
  // pending message.
  void UpdateLocked(uint16_t vector, bool was_deliverable);

  mutable std::mutex mu_;
  std::shared_ptr<MsiSink> sink_;
  std::vector<MsixEntry> entries_;
  std::vector<bool> pending_;
  bool enabled_ = false;
  bool function_masked_ = false;
  MsixStats stats_;
};

}  // namespace kite::pci
