// PciHostBridge: the host bridge at 00.0 of kite's root bus, a configuration header and
// nothing more (no BARs, no capabilities, no interrupt): class 06/00/00 "host bridge", the Red
// Hat/QEMU generic PCIe host bridge id 1b36:0008, which no OS applies chipset quirks to. Its
// presence is what makes the bus look like a PC's: Linux's configuration mechanism #1 sanity
// check looks for a host bridge (or VGA) class on bus 0.
//
// Threads: configuration accesses come one at a time (PciBus's lock); BAR accesses never (it
// has none).
#pragma once

#include "devices/pci/pci_config.h"
#include "devices/pci/pci_device.h"

namespace kite::pci {

inline constexpr uint16_t kRedHatVendorId = 0x1b36;
inline constexpr uint16_t kHostBridgeDeviceId = 0x0008;
inline constexpr uint32_t kClassHostBridge = 0x060000;

class PciHostBridge : public PciDevice {
 public:
  PciHostBridge();
  void ConfigRead(uint16_t offset, std::span<uint8_t> data) override;
  void ConfigWrite(uint16_t offset, std::span<const uint8_t> data) override;
  std::vector<BarMapping> MappedBars() override { return {}; }
  void BarRead(int, uint64_t, std::span<uint8_t> data) override;
  void BarWrite(int, uint64_t, std::span<const uint8_t>) override {}
  std::string pci_name() const override { return "pci-host-bridge"; }

 private:
  PciConfigSpace config_;
};

}  // namespace kite::pci
