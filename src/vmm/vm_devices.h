// The devices of a kite VM and how they are wired: which bus, which address, which interrupt.
// The table lives in vm_devices.cc; the devices themselves are in src/devices.
//
//   PIO  0x3f8-0x3ff  COM1 16550 UART, IRQ 4 (level), host side per --serial
//   PIO  0x60-0x64    i8042 (reset only)
//   PIO  0x70-0x71    CMOS RTC
//   PIO  0x3f0        boot-time marker
//   PIO  0x600-0x602  ACPI sleep control / status / reset registers
//   MMIO kGedBase     ACPI Generic Event Device, IRQ kGedIrq (only with ACPI)
// The legacy PC devices come from devices/legacy_devices.h.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "devices/bus.h"
#include "devices/irq_line.h"
#include "devices/legacy_devices.h"
#include "devices/vm_events.h"
#include "kite/kite.h"
#include "vmm/device_registry.h"
#include "vmm/kvm.h"

namespace kite {

class AcpiGed;
class AcpiPm;
class SerialConsole;

// An interrupt line on the in-kernel irqchip through KVM_IRQ_LINE.
class KvmIrqLine : public IrqLine {
 public:
  KvmIrqLine(const VmFd* vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  void SetLevel(bool asserted) override;

 private:
  const VmFd* const vm_;
  const uint32_t gsi_;
};

struct DeviceWiring {
  const VmFd* vm = nullptr;
  Bus* pio = nullptr;
  Bus* mmio = nullptr;
  const VmConfig* config = nullptr;
  DeviceRegistry* registry = nullptr;
  VmRequestFn on_request;                            // power off / reset from a device
  std::function<void()> on_user_quit;                // Ctrl-A x on the console
  std::function<void(uint32_t slot)> on_slot_eject;  // the guest ejected a hotplug slot (GED)
  std::chrono::steady_clock::time_point start;       // kite's start, for the boot marker
};

// The legacy devices the VMM talks to by type (the registry owns their snapshot adapters).
struct VmDevices {
  std::unique_ptr<SerialConsole> console;  // host side of COM1
  std::shared_ptr<KvmIrqLine> com1_irq;
  LegacyDevices legacy;  // COM1, i8042, RTC, boot marker
  std::shared_ptr<AcpiPm> acpi_pm;
  std::shared_ptr<AcpiGed> ged;  // null without ACPI

  ~VmDevices();
};

// Creates the legacy devices, puts them on the buses and registers each in `wiring.registry`.
Result<std::unique_ptr<VmDevices>> CreateDevices(const DeviceWiring& wiring);
// Starts host-side threads (console input).
Result<void> StartDevices(VmDevices& devices);
// Stops them; call after the vCPUs stopped. Idempotent.
void StopDevices(VmDevices& devices);

// Whether the MC146818 RTC is on the PIO bus (a "rtc-cmos" entry at layout::kRtcPort): the ACPI
// tables then describe it (acpi::AcpiConfig::cmos_rtc), so tables and devices agree.
bool HasCmosRtc(const DeviceRegistry& registry);

}  // namespace kite
