// The PC legacy devices kite puts on the I/O-port bus, created and registered in one call so
// that the VMM and the tests wire them the same way (ports from vmm/layout.h):
//   0x3f8-0x3ff  COM1 16550A, IRQ 4     0x60-0x64  i8042 (reset)
//   0x70-0x71    CMOS RTC               0x3f0      boot-time marker
// The ACPI sleep/reset registers (0x600-0x602) are registered by the ACPI code.
#pragma once

#include <memory>

#include "base/result.h"
#include "devices/boot_marker.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/irq_line.h"
#include "devices/rtc_cmos.h"
#include "devices/serial_sink.h"
#include "devices/uart_16550.h"
#include "devices/vm_events.h"

namespace kite {

struct LegacyDeviceParams {
  SerialSink* serial_sink = nullptr;  // COM1 output (SerialConsole::sink()); must outlive COM1
  IrqLine* com1_irq = nullptr;        // IRQ 4; must outlive COM1
  VmRequestFn request;                // i8042 reset
  BootMarker::Clock::time_point start = BootMarker::Clock::now();  // kite's start time
  std::function<void(const BootMark&)> on_boot_marker;             // optional
  RtcCmos::Clock rtc_clock;  // optional; default the host's clock
};

struct LegacyDevices {
  std::shared_ptr<Uart16550> com1;
  std::shared_ptr<I8042> i8042;
  std::shared_ptr<RtcCmos> rtc;
  std::shared_ptr<BootMarker> boot_marker;
};

// Creates the devices and registers them on `pio`. Fails when a parameter is missing or a
// port range is already taken.
Result<LegacyDevices> RegisterLegacyDevices(Bus& pio, LegacyDeviceParams params);

}  // namespace kite
