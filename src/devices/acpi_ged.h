// ACPI Generic Event Device (ACPI 6.5 §5.6.9): the hardware-reduced platform's way to send
// events to the guest. The DSDT declares the device ("ACPI0013") with this register block
// (MMIO, layout::kGedBase) and an interrupt (layout::kGedIrq); its _EVT method reads the
// event selector and notifies the matching devices. See vmm/acpi/dsdt.cc for the AML side.
//
// Registers (32-bit, offsets into the block; anything else reads 0, writes are dropped):
//   0x00  EVENT_SELECTOR   read-to-clear: events latched since the last read
//                          (kGedEventPowerButton, kGedEventSlots, kGedEventVmGenId)
//   0x04  SLOT_PRESENT     read-only: bit n = hotplug slot n holds a device (its _STA)
//   0x08  SLOT_CHECK       read-to-clear: slots whose presence changed (-> Notify (slot, 1))
//   0x0c  SLOT_EJECT_REQ   read-to-clear: slots the host asks the guest to release
//                          (-> Notify (slot, 3))
//   0x10  SLOT_EJECT       write-only: the slot's _EJ0 writes its number once the guest let
//                          go of the device; the slot becomes empty and the VMM is told.
// Narrower reads return (and, for read-to-clear registers, clear) only their bytes.
//
// Threads: Trigger()/SetSlotPresent()/RequestSlotEject() run on whichever thread raises an
// event (control socket, hotplug); Read()/Write() on vCPU threads. All registers are guarded
// by a mutex, so a read returns and clears exactly the bits it saw: no event is lost to a race.
// The eject callback runs on the vCPU thread, without the mutex held.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/irq_line.h"

namespace kite {

inline constexpr uint64_t kGedEventSelectorOffset = 0x00;
inline constexpr uint64_t kGedSlotPresentOffset = 0x04;
inline constexpr uint64_t kGedSlotCheckOffset = 0x08;
inline constexpr uint64_t kGedSlotEjectRequestOffset = 0x0c;
inline constexpr uint64_t kGedSlotEjectOffset = 0x10;
inline constexpr uint64_t kGedRegistersSize = 0x14;  // what the DSDT's OperationRegion covers
inline constexpr uint32_t kGedMaxSlots = 32;         // one bit per slot

// Event bits; the DSDT's _EVT tests them.
inline constexpr uint32_t kGedEventPowerButton = 1u << 0;  // Notify (PWRB, 0x80)
inline constexpr uint32_t kGedEventSlots = 1u << 1;        // look at SLOT_CHECK/SLOT_EJECT_REQ
// The VM generation id changed (vmm/vmgenid.h): Notify (\_SB.VGEN, 0x80); the guest re-reads
// the id and reseeds its RNG. Only when the DSDT has VGEN (AcpiConfig::vmgenid_addr).
inline constexpr uint32_t kGedEventVmGenId = 1u << 2;

class AcpiGed : public BusDevice {
 public:
  // Called with the slot number when the guest ejected a slot's device (its _EJ0).
  using SlotEjectFn = std::function<void(uint32_t slot)>;

  // Snapshot state: everything the guest has not read yet, and which slots are filled.
  struct State {
    uint32_t pending = 0;
    uint32_t slots_present = 0;
    uint32_t slot_check = 0;
    uint32_t slot_eject_request = 0;
  };
  struct Stats {
    uint64_t events_triggered = 0;
    uint64_t unknown_accesses = 0;
    uint64_t slot_ejects = 0;
  };

  explicit AcpiGed(std::shared_ptr<IrqLine> irq, SlotEjectFn on_eject = {})
      : irq_(std::move(irq)), on_eject_(std::move(on_eject)) {}

  // Latches `event_bits` and sends one interrupt (edge). A zero mask does nothing.
  void Trigger(uint32_t event_bits);
  // Hotplug: marks `slot` filled or empty and tells the guest to re-check it (Device Check):
  // the guest enumerates a filled slot's device, or removes an emptied slot's device (its
  // driver then resets the virtio device). false (and nothing happens) for slot >= kGedMaxSlots.
  bool SetSlotPresent(uint32_t slot, bool present);
  // Asks the guest to release `slot` (Eject Request); the VMM hears back through the eject
  // callback. Linux honours it for the DSDT's container slots only after guest userspace has
  // offlined the container (docs/ACPI.md). false for slot >= kGedMaxSlots.
  bool RequestSlotEject(uint32_t slot);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  State GetState() const;
  void SetState(const State& state);
  Stats stats() const;

 private:
  // The 32-bit register at `reg_offset`, or nullptr; `read_to_clear` says how reads behave.
  uint32_t* Register(uint64_t reg_offset, bool* read_to_clear);
  void CountUnknown(const char* what, uint64_t offset, size_t size);

  const std::shared_ptr<IrqLine> irq_;
  const SlotEjectFn on_eject_;
  mutable std::mutex mutex_;
  State state_;  // guarded by mutex_
  Stats stats_;  // guarded by mutex_
};

}  // namespace kite
