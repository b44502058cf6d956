// PciBus: kite's PCI root bus (bus 0, segment 0): 32 device slots, function 0 of each (no
// multi-function devices), the host bridge in slot 0. Configuration accesses arrive from the
// ECAM window or the 0xCF8/0xCFC port pair (pci_config_access.h) as (device, function, offset)
// and go to the device in that slot; an empty slot or function reads all ones (how an OS sees
// that nothing is there) and ignores writes.
//
// BARs: after every configuration write the bus asks the device where its memory BARs are
// decoded now (PciDevice::MappedBars) and moves their ranges on the MMIO bus to match: a BAR
// is on the bus while memory space is enabled, its address is programmed, and it lies wholly
// inside one of the bus's windows (the host bridge's _CRS windows; a BAR the guest puts
// elsewhere, or over another device, is not mapped and the access goes unclaimed). Each
// change is reported to the slot's BarObserver (the VMM moves its ioeventfds with it).
//
// Slots are filled and emptied at run time (hotplug): AddDevice takes the lowest free slot or
// a given one, RemoveDevice unmaps the BARs and empties the slot. Nothing here assumes the set
// of devices is fixed after boot.
//
// Threads: configuration accesses on vCPU threads; AddDevice/RemoveDevice/Refresh on a control
// thread. One mutex serialises them all (configuration space traffic is rare: boot, probe);
// BAR accesses go through the MMIO bus straight to the device, not through this lock. Lock
// order: this bus → the device's lock → the MMIO bus's writer lock; the observer runs under
// the bus lock and must not call back into it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/bus.h"
#include "devices/pci/pci_device.h"

namespace kite::pci {

inline constexpr uint8_t kSlots = 32;

struct AddressWindow {
  uint64_t base = 0;
  uint64_t size = 0;
  bool Contains(uint64_t addr, uint64_t len) const {
    return len != 0 && addr >= base && len <= size && addr - base <= size - len;
  }
};

// Told when BAR `bar` of the slot's device appears at `address` (nullopt: it disappeared).
using BarObserver = std::function<void(int bar, std::optional<uint64_t> address)>;

struct PciBusStats {
  uint64_t config_reads = 0;
  uint64_t config_writes = 0;
  uint64_t empty_accesses = 0;  // to an empty slot or function != 0
  uint64_t refused_bars = 0;    // BAR placements outside the windows or over another range
};

class PciBus {
 public:
  // `mmio`: where BARs are mapped; `windows`: where a BAR may be.
  PciBus(Bus* mmio, std::vector<AddressWindow> windows);
  ~PciBus();

  // Puts `device` in `slot` (or the lowest free one) and maps the BARs it decodes already.
  // Returns the slot. Fails when the slot is taken or none is free.
  Result<uint8_t> AddDevice(std::shared_ptr<PciDevice> device, BarObserver observer = {},
                            std::optional<uint8_t> slot = std::nullopt);
  // Unmaps the device's BARs (the observer hears of each) and empties the slot.
  Result<void> RemoveDevice(uint8_t slot);
  // Re-reads where `slot`'s device decodes (after a snapshot restore changed its config space).
  void Refresh(uint8_t slot);
  std::shared_ptr<PciDevice> device(uint8_t slot) const;
  uint32_t occupied_slots() const;  // bit n = slot n

  // Configuration access for (device, function, offset) on bus 0.
  void ConfigRead(uint8_t dev, uint8_t function, uint16_t offset, std::span<uint8_t> data);
  void ConfigWrite(uint8_t dev, uint8_t function, uint16_t offset, std::span<const uint8_t> data);

  PciBusStats stats() const;

 private:
  struct Slot {
    std::shared_ptr<PciDevice> device;
    BarObserver observer;
    std::vector<BarMapping> mapped;  // what is on the MMIO bus now
  };
  void RefreshLocked(Slot& slot);
  void Unmap(Slot& slot, const BarMapping& m);
  bool Map(Slot& slot, const BarMapping& m);

  Bus* mmio_;
  const std::vector<AddressWindow> windows_;
  mutable std::mutex mu_;
  std::array<Slot, kSlots> slots_;
  PciBusStats stats_;
};

}  // namespace kite::pci
