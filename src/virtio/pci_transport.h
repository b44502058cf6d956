// PciTransport: the virtio-pci modern transport (virtio 1.2 section 4.1) in front of one
// VirtioDevice: a PCI function (vendor 0x1af4, device 0x1040 + virtio id, revision 1) on
// kite's PCI bus, with MSI-X. TransportCore does the status machine, feature negotiation,
// queue setup, reset, quiesce and state; this class is the PCI side.
//
// Everything sits in one 64-bit memory BAR (BAR 0, kBarSize bytes, prefetchable no):
//
//   0x0000  common configuration (struct virtio_pci_common_cfg, 4.1.4.3)    COMMON_CFG cap
//   0x1000  ISR status, one byte, read-to-clear (4.1.4.5)                   ISR_CFG cap
//   0x2000  device-specific configuration (VirtioDevice::ReadConfig)        DEVICE_CFG cap
//   0x3000  notifications: queue q at 0x3000 + 4·q (notify_off_multiplier 4,
//           queue_notify_off = q), one ioeventfd each in the VMM             NOTIFY_CFG cap
//   0x4000  MSI-X table, 0x5000 MSI-X PBA (devices/pci/msix.h)              MSI-X cap
//
// plus the VIRTIO_PCI_CAP_PCI_CFG capability (a window into the BAR through configuration
// space, 4.1.4.7). MSI-X has one vector per queue and one for configuration changes
// (NumVectors); config_msix_vector and queue_msix_vector pick them, VIRTIO_MSI_NO_VECTOR (or a
// vector beyond the table, which reads back as NO_VECTOR: 4.1.5.1.2) means "no interrupt".
// INTx is not implemented (interrupt pin 0): a driver that does not enable MSI-X gets no
// interrupts, and the drops are counted (Msix stats).
//
// Accesses to common configuration must have the field's natural width (4.1.3.1; 64-bit
// fields also as two 32-bit halves); others read 0 and are dropped, as are writes to
// read-only fields, all counted in protocol_errors.
//
// Threads: ConfigRead/ConfigWrite/MappedBars on vCPU threads under the PciBus lock, BarRead/
// BarWrite on vCPU threads; all take the core's mu_ except MSI-X table/PBA accesses (the Msix
// has its own lock). Interrupt delivery (DeliverInterrupt) from any thread reads the vector
// registers as atomics and calls Msix::Notify. Lock order: PciBus → mu_ → Msix.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "devices/pci/msix.h"
#include "devices/pci/pci_config.h"
#include "devices/pci/pci_device.h"
#include "virtio/pci_transport_state.h"
#include "virtio/transport_core.h"

namespace kite::virtio {

class PciTransport : public pci::PciDevice, public TransportCore {
 public:
  static constexpr uint64_t kBarSize = 0x8000;
  static constexpr uint64_t kCommonOffset = 0x0000;
  static constexpr uint64_t kIsrOffset = 0x1000;
  static constexpr uint64_t kDeviceCfgOffset = 0x2000;
  static constexpr uint64_t kDeviceCfgSize = 0x1000;
  static constexpr uint64_t kNotifyOffset = 0x3000;
  static constexpr uint32_t kNotifyMultiplier = 4;
  static constexpr uint64_t kMsixTableOffset = 0x4000;
  static constexpr uint64_t kMsixPbaOffset = 0x5000;
  static constexpr int kBar = 0;

  // MSI-X vectors a device needs: one per queue and one for configuration changes.
  static uint16_t NumVectors(const VirtioDevice& device);

  // `bar_address`: where BAR 0 starts (0: unassigned, the OS assigns it). `msi`: the vectors'
  // delivery (NumVectors of them). Memory decoding starts disabled, as after a PCI reset.
  PciTransport(std::shared_ptr<VirtioDevice> device, TransportEnv env, uint64_t bar_address,
               std::shared_ptr<pci::MsiSink> msi);
  ~PciTransport() override;  // resets the device

  // pci::PciDevice
  void ConfigRead(uint16_t offset, std::span<uint8_t> data) override;
  void ConfigWrite(uint16_t offset, std::span<const uint8_t> data) override;
  std::vector<pci::BarMapping> MappedBars() override;
  void BarRead(int bar, uint64_t offset, std::span<uint8_t> data) override;
  void BarWrite(int bar, uint64_t offset, std::span<const uint8_t> data) override;
  std::string pci_name() const override;

  // Snapshot (pci_transport_snapshot.cc): TransportCore's rules, plus the configuration space
  // (read-only bits must match this device) and the MSI-X table. RestorePciState on a fresh
  // transport; the caller then has the bus re-read the BARs (PciBus::Refresh).
  Result<PciTransportState> SavePciState();
  Result<void> RestorePciState(const PciTransportState& state);

  pci::MsixStats msix_stats() const { return msix_.stats(); }
  bool msix_enabled() const { return msix_.enabled(); }
  uint16_t queue_vector(uint16_t queue) const;
  uint16_t config_vector() const { return msix_config_.load(std::memory_order_acquire); }

 private:
  void AddCapabilities();
  void DeliverInterrupt(uint32_t bits, uint16_t queue) override;
  void ResetTransportLocked() override;
  void BarAccessLocked(uint64_t offset, std::span<uint8_t> data, bool write);
  void CommonReadLocked(uint64_t offset, std::span<uint8_t> data);
  void CommonWriteLocked(uint64_t offset, std::span<const uint8_t> data);
  bool CommonWriteQueueLocked(uint64_t offset, size_t size, uint64_t value);
  uint64_t CommonValueLocked(uint64_t field);
  void NotifyWrite(uint64_t offset, size_t size);
  void PciCfgWindowLocked(bool write);
  uint16_t CheckVector(uint16_t vector) const;

  pci::PciConfigSpace config_;  // under mu_
  pci::Msix msix_;
  uint8_t msix_cap_ = 0;  // offsets of capabilities in config_
  uint8_t pci_cfg_cap_ = 0;
  std::atomic<uint16_t> msix_config_{0xffff};
  std::unique_ptr<std::atomic<uint16_t>[]> queue_vectors_;
  std::atomic<bool> warned_no_msix_{false};
};

}  // namespace kite::virtio
