// ACPI Generic Event Device register block (see acpi_ged.h; ACPI 6.5 §5.6.9).
#include "devices/acpi_ged.h"

#include <algorithm>

#include "base/log.h"

namespace kite {

void AcpiGed::Trigger(uint32_t event_bits) {
  if (event_bits == 0) return;
  {
    std::lock_guard lock(mutex_);
    state_.pending |= event_bits;
    ++stats_.events_triggered;
  }
  // Edge-triggered (the DSDT's Interrupt descriptor says Edge): one pulse per Trigger. The
  // guest's _EVT reads all latched bits at once, so coalesced pulses lose nothing.
  irq_->Pulse();
}

bool AcpiGed::SetSlotPresent(uint32_t slot, bool present) {
  if (slot >= kGedMaxSlots) return false;
  {
    std::lock_guard lock(mutex_);
    const uint32_t bit = 1u << slot;
    state_.slots_present = present ? (state_.slots_present | bit) : (state_.slots_present & ~bit);
    state_.slot_check |= bit;
  }
  Trigger(kGedEventSlots);
  return true;
}

bool AcpiGed::RequestSlotEject(uint32_t slot) {
  if (slot >= kGedMaxSlots) return false;
  {
    std::lock_guard lock(mutex_);
    state_.slot_eject_request |= 1u << slot;
  }
  Trigger(kGedEventSlots);
  return true;
}

uint32_t* AcpiGed::Register(uint64_t reg_offset, bool* read_to_clear) {
  *read_to_clear = reg_offset != kGedSlotPresentOffset;
  switch (reg_offset) {
    case kGedEventSelectorOffset:
      return &state_.pending;
    case kGedSlotPresentOffset:
      return &state_.slots_present;
    case kGedSlotCheckOffset:
      return &state_.slot_check;
    case kGedSlotEjectRequestOffset:
      return &state_.slot_eject_request;
    default:
      return nullptr;
  }
}

void AcpiGed::CountUnknown(const char* what, uint64_t offset, size_t size) {
  ++stats_.unknown_accesses;
  KITE_LOG_RATELIMITED(Warn, "acpi-ged: dropped %s (%zu bytes at offset 0x%llx)", what, size,
                       static_cast<unsigned long long>(offset));
}

void AcpiGed::Read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  const uint64_t reg_offset = offset & ~uint64_t{3};
  const uint64_t byte = offset & 3;
  std::lock_guard lock(mutex_);
  bool read_to_clear = false;
  uint32_t* reg = Register(reg_offset, &read_to_clear);
  if (reg == nullptr || byte + data.size() > 4) {
    CountUnknown("read", offset, data.size());
    return;
  }
  uint32_t seen = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const uint32_t shift = static_cast<uint32_t>(8 * (byte + i));
    data[i] = static_cast<uint8_t>(*reg >> shift);
    seen |= uint32_t{0xff} << shift;
  }
  if (read_to_clear) *reg &= ~seen;
}

void AcpiGed::Write(uint64_t offset, std::span<const uint8_t> data) {
  uint32_t slot = 0;
  {
    std::lock_guard lock(mutex_);
    if (offset != kGedSlotEjectOffset || data.empty() || data.size() > 4) {
      CountUnknown("write", offset, data.size());
      return;
    }
    for (size_t i = 0; i < data.size(); ++i) slot |= uint32_t{data[i]} << (8 * i);
    if (slot >= kGedMaxSlots) {
      CountUnknown("eject of a slot out of range", offset, data.size());
      return;
    }
    state_.slots_present &= ~(1u << slot);
    ++stats_.slot_ejects;
  }
  if (on_eject_) on_eject_(slot);
}

AcpiGed::State AcpiGed::GetState() const {
  std::lock_guard lock(mutex_);
  return state_;
}

void AcpiGed::SetState(const State& state) {
  std::lock_guard lock(mutex_);
  state_ = state;
}

AcpiGed::Stats AcpiGed::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace kite
