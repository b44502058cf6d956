// ACPI hardware-reduced power management registers (ACPI 6.5 §4.8.3.7 "Sleep Control and
// Status Registers", §4.8.3.6 "Reset Register"), three byte-wide I/O ports on the PIO bus at
// layout::kAcpiSleepControlPort. The FADT (vmm/acpi) points SLEEP_CONTROL_REG,
// SLEEP_STATUS_REG and RESET_REG here.
//
//   +0  SLEEP_CONTROL  write: bits 4:2 SLP_TYPx, bit 5 SLP_EN. SLP_EN with SLP_TYP = 5 (the
//                      DSDT's \_S5) requests power off; other sleep types are ignored (no
//                      S1-S4: the DSDT declares none). Reads 0.
//   +1  SLEEP_STATUS   bit 7 WAK_STS, write-1-to-clear. Never set (no wake events). Reads 0.
//   +2  RESET          write of layout::kAcpiResetValue requests a reset. Reads 0.
//
// Wider accesses are taken byte by byte. Runs on vCPU threads; the only state is counters.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "devices/bus.h"
#include "devices/vm_events.h"

namespace kite {

inline constexpr uint64_t kAcpiPmSleepControlOffset = 0;
inline constexpr uint64_t kAcpiPmSleepStatusOffset = 1;
inline constexpr uint64_t kAcpiPmResetOffset = 2;
inline constexpr uint64_t kAcpiPmSize = 3;  // register the device for 3 ports
inline constexpr uint8_t kAcpiSlpTypS5 = 5;
inline constexpr uint8_t kAcpiSlpEn = 1u << 5;

class AcpiPm : public BusDevice {
 public:
  struct Stats {
    uint64_t ignored_writes = 0;  // sleep types other than S5, other reset values
  };

  // `reset_value` is what RESET_REG takes (the FADT's RESET_VALUE).
  AcpiPm(VmRequestFn on_request, uint8_t reset_value)
      : on_request_(std::move(on_request)), reset_value_(reset_value) {}

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  Stats stats() const { return {ignored_writes_.load(std::memory_order_relaxed)}; }

 private:
  void WriteByte(uint64_t offset, uint8_t value);

  const VmRequestFn on_request_;
  const uint8_t reset_value_;
  std::atomic<uint64_t> ignored_writes_{0};
};

}  // namespace kite
