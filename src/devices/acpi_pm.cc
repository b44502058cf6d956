// ACPI hardware-reduced sleep control/status and reset registers (see acpi_pm.h).
#include "devices/acpi_pm.h"

#include <algorithm>

#include "base/log.h"

namespace kite {

void AcpiPm::Read(uint64_t /*offset*/, std::span<uint8_t> data) {
  // SLEEP_CONTROL and RESET are write-only; SLEEP_STATUS never has WAK_STS set.
  std::fill(data.begin(), data.end(), 0);
}

void AcpiPm::Write(uint64_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) WriteByte(offset + i, data[i]);
}

void AcpiPm::WriteByte(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kAcpiPmSleepControlOffset: {
      if ((value & kAcpiSlpEn) == 0) return;  // SLP_TYP written alone: nothing happens yet
      uint8_t slp_typ = (value >> 2) & 0x7;
      if (slp_typ == kAcpiSlpTypS5) {
        on_request_(VmRequest::kPowerOff);
        return;
      }
      ignored_writes_.fetch_add(1, std::memory_order_relaxed);
      KITE_LOG_RATELIMITED(Warn,
                           "acpi-pm: guest asked for sleep type %u; only S5 (5) is "
                           "supported, ignored",
                           slp_typ);
      return;
    }
    case kAcpiPmSleepStatusOffset:
      return;  // write-1-to-clear of WAK_STS, which is never set
    case kAcpiPmResetOffset:
      if (value == reset_value_) {
        on_request_(VmRequest::kReset);
        return;
      }
      ignored_writes_.fetch_add(1, std::memory_order_relaxed);
      KITE_LOG_RATELIMITED(Warn, "acpi-pm: reset register written with 0x%x, ignored", value);
      return;
    default:
      ignored_writes_.fetch_add(1, std::memory_order_relaxed);
      return;
  }
}

}  // namespace kite
