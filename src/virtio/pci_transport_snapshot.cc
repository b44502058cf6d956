// PciTransport: snapshot state. The virtio part is TransportCore's (Quiesce → SaveState,
// RestoreState on a fresh transport → Resume); the PCI part is the configuration space (BAR
// address, command register, MSI-X enable and mask, the PCI_CFG window), the MSI-X table and
// pending bits, and the vector registers. A restore checks all of it before it changes
// anything that cannot be put back: on error the transport is still fresh.
//
// Threads: the control thread, vCPUs paused (see pci_transport.h). The caller has the PCI bus
// re-read the BARs afterwards (PciBus::Refresh), which maps BAR 0 where the guest had it.
#include <string>

#include "virtio/pci_transport.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {

Result<PciTransportState> PciTransport::SavePciState() {
  PciTransportState s;
  s.virtio = TRY(SaveState());
  std::lock_guard lock(mu_);
  s.config = config_.Save();
  s.msix = msix_.Save();
  s.msix_config = msix_config_.load(std::memory_order_acquire);
  for (size_t q = 0; q < queues_.size(); ++q) s.queue_vectors.push_back(queue_vector(q));
  return s;
}

Result<void> PciTransport::RestorePciState(const PciTransportState& s) {
  std::string what = pci_name() + ": restore";
  if (s.queue_vectors.size() != queues_.size()) {
    return Err(what + ": " + std::to_string(s.queue_vectors.size()) +
               " queue vectors saved, the device has " + std::to_string(queues_.size()) +
               " queues");
  }
  auto valid = [this](uint16_t v) { return v == virtio_pci::kNoVector || v < msix_.vectors(); };
  if (!valid(s.msix_config)) return Err(what + ": config vector " + std::to_string(s.msix_config));
  for (uint16_t v : s.queue_vectors) {
    if (!valid(v)) return Err(what + ": queue vector " + std::to_string(v));
  }
  std::vector<uint8_t> fresh_config;
  pci::MsixState fresh_msix;
  {
    std::lock_guard lock(mu_);
    if (status() != 0) return Err(what + ": the transport is not fresh");
    fresh_config = config_.Save();
    fresh_msix = msix_.Save();
    TRY_CTX(config_.Restore(s.config), what);
    auto control = static_cast<uint16_t>(config_.Get(msix_cap_ + 2, 2));
    if (Result<void> r = msix_.Restore(s.msix, control); !r) {
      (void)config_.Restore(fresh_config);
      return std::move(r).error().Context(what);
    }
    msix_config_.store(s.msix_config, std::memory_order_release);
    for (size_t q = 0; q < queues_.size(); ++q) queue_vectors_[q].store(s.queue_vectors[q]);
  }
  if (Result<void> r = RestoreState(s.virtio); !r) {
    std::lock_guard lock(mu_);
    (void)config_.Restore(fresh_config);
    (void)msix_.Restore(fresh_msix, 0);
    ResetTransportLocked();
    return r;
  }
  return {};
}

}  // namespace kite::virtio
