// PciHostBridge: a bare type-0 header. See pci_host_bridge.h.
#include "devices/pci/pci_host_bridge.h"

#include <cstring>

namespace kite::pci {

PciHostBridge::PciHostBridge()
    : config_(PciIdentity{.vendor_id = kRedHatVendorId,
                          .device_id = kHostBridgeDeviceId,
                          .revision = 0,
                          .class_code = kClassHostBridge,
                          .subsystem_vendor_id = kRedHatVendorId,
                          .subsystem_id = 0x1100}) {}

void PciHostBridge::ConfigRead(uint16_t offset, std::span<uint8_t> data) {
  config_.Read(offset, data);
}

void PciHostBridge::ConfigWrite(uint16_t offset, std::span<const uint8_t> data) {
  config_.Write(offset, data);
}

void PciHostBridge::BarRead(int, uint64_t, std::span<uint8_t> data) {
  std::memset(data.data(), 0xff, data.size());
}

}  // namespace kite::pci
