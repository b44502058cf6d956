// Creation and port registration of the PC legacy devices; see legacy_devices.h.
#include "devices/legacy_devices.h"

#include "vmm/layout.h"

namespace kite {

Result<LegacyDevices> RegisterLegacyDevices(Bus& pio, LegacyDeviceParams params) {
  if (params.serial_sink == nullptr || params.com1_irq == nullptr) {
    return Err("legacy devices: COM1 needs a serial sink and an IRQ line");
  }
  LegacyDevices devices;
  devices.com1 = std::make_shared<Uart16550>(params.serial_sink, params.com1_irq);
  devices.i8042 = std::make_shared<I8042>(std::move(params.request));
  devices.rtc = std::make_shared<RtcCmos>(std::move(params.rtc_clock));
  devices.boot_marker =
      std::make_shared<BootMarker>(params.start, std::move(params.on_boot_marker));
  TRY_CTX(pio.Register(layout::kCom1Port, Uart16550::kRegisterCount, devices.com1), "COM1");
  TRY_CTX(pio.Register(layout::kI8042DataPort, kI8042RangeLength, devices.i8042), "i8042");
  TRY_CTX(pio.Register(layout::kRtcPort, kRtcRangeLength, devices.rtc), "RTC");
  TRY_CTX(pio.Register(layout::kBootMarkerPort, kBootMarkerRangeLength, devices.boot_marker),
          "boot marker");
  return devices;
}

}  // namespace kite
