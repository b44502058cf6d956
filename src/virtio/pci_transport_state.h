// Snapshot state of a virtio-pci function (PciTransport::SavePciState / RestorePciState) as
// plain data: the virtio transport (TransportState, virtio_state.h) plus the PCI side. No JSON
// here: vmm/snapshot/pci_state_json.h converts it.
#pragma once

#include <cstdint>
#include <vector>

#include "devices/pci/msix.h"
#include "virtio/virtio_state.h"

namespace kite::virtio {

struct PciTransportState {
  TransportState virtio;
  // The 256-byte configuration space: command register, BAR 0's address, MSI-X Message
  // Control, the PCI_CFG window. A restore refuses bytes whose read-only bits differ.
  std::vector<uint8_t> config;
  pci::MsixState msix;                  // the vector table and pending bits
  uint16_t msix_config = 0xffff;        // config_msix_vector
  std::vector<uint16_t> queue_vectors;  // queue_msix_vector, one per queue
  bool operator==(const PciTransportState&) const = default;
};

}  // namespace kite::virtio
