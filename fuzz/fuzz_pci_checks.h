// The checks virtio_pci_fuzzer makes at the PCI function's edges: a recording MSI sink (the
// VMM's KVM routes and irqfds in the real machine, vm_pci.cc), a PciDevice in front of the
// transport that checks every BAR access the bus hands it and what some registers read, and
// the read-only bytes of a function's configuration space. A broken promise aborts with
// "virtio_pci_fuzzer: invariant violated: ...".
//
// Threads: everything on the fuzzer's thread (Route/Signal under the Msix's lock).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "devices/pci/msix.h"
#include "devices/pci/pci_config.h"
#include "devices/pci/pci_device.h"
#include "virtio/pci_transport.h"
#include "virtio/virtio_spec.h"

namespace kite::fuzz {

[[noreturn]] inline void PciFail(const char* what) {
  std::fprintf(stderr, "virtio_pci_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

namespace vp = virtio::virtio_pci;
using virtio::PciTransport;

// The VMM's MSI delivery as the fuzzer sees it: the routes and the messages sent.
class CheckingSink : public pci::MsiSink {
 public:
  void Route(uint16_t vector, const pci::MsiMessage& message) override { routes[vector] = message; }
  void Signal(uint16_t vector) override {
    if (!routes.contains(vector)) PciFail("MSI-X message on a vector never routed");
    signals.push_back(vector);
  }
  std::map<uint16_t, pci::MsiMessage> routes;
  std::vector<uint16_t> signals;  // since the last check
};

// What the bus sees as the function: the transport, with every BAR access checked.
class CheckedFunction : public pci::PciDevice {
 public:
  CheckedFunction(std::shared_ptr<PciTransport> t, const uint64_t* access_addr)
      : t_(std::move(t)), access_addr_(access_addr) {}
  void ConfigRead(uint16_t offset, std::span<uint8_t> data) override {
    t_->ConfigRead(offset, data);
  }
  void ConfigWrite(uint16_t offset, std::span<const uint8_t> data) override {
    t_->ConfigWrite(offset, data);
  }
  std::vector<pci::BarMapping> MappedBars() override { return t_->MappedBars(); }
  void BarRead(int bar, uint64_t offset, std::span<uint8_t> data) override {
    Check(bar, offset, data.size());
    t_->BarRead(bar, offset, data);
    CheckRead(offset, data);
  }
  void BarWrite(int bar, uint64_t offset, std::span<const uint8_t> data) override {
    Check(bar, offset, data.size());
    t_->BarWrite(bar, offset, data);
  }
  std::string pci_name() const override { return t_->pci_name(); }

 private:
  void Check(int bar, uint64_t offset, size_t n) const {
    std::vector<pci::BarMapping> mapped = t_->MappedBars();
    if (bar != PciTransport::kBar || mapped.size() != 1 || mapped[0].index != bar) {
      PciFail("a BAR access reached a function that does not decode that BAR");
    }
    if (n == 0 || offset >= PciTransport::kBarSize || n > PciTransport::kBarSize - offset) {
      PciFail("an access beyond the BAR reached the function");
    }
    if (mapped[0].address + offset != *access_addr_) {
      PciFail("a BAR access arrived at another offset than its address's");
    }
  }
  void CheckRead(uint64_t offset, std::span<const uint8_t> data) const {
    uint64_t v = 0;
    std::memcpy(&v, data.data(), std::min<size_t>(data.size(), 8));
    size_t n = data.size();
    uint16_t vectors = PciTransport::NumVectors(t_->device());
    if (offset == vp::kDeviceStatus && n == 1 && (v & virtio::kStatusDriverOk) &&
        !(v & virtio::kStatusFeaturesOk)) {
      PciFail("DRIVER_OK without FEATURES_OK");
    }
    if (offset == vp::kNumQueues && n == 2 && v != t_->num_queues()) PciFail("num_queues");
    if ((offset == vp::kConfigMsixVector || offset == vp::kQueueMsixVector) && n == 2 &&
        v != vp::kNoVector && v >= vectors) {
      PciFail("an MSI-X vector register holds a vector the table does not have");
    }
    if (offset == PciTransport::kIsrOffset && (v & ~uint64_t{3} & 0xff)) PciFail("ISR bits");
    if (offset >= PciTransport::kMsixTableOffset && n == 4 && offset % 16 == 12 &&
        offset < PciTransport::kMsixTableOffset + 16 * vectors && (v & ~uint64_t{1})) {
      PciFail("Vector Control bits beyond Mask");
    }
  }

  std::shared_ptr<PciTransport> t_;
  const uint64_t* access_addr_;
};

// Known bytes of a function's configuration space (read-only for the guest).
struct Identity {
  std::map<uint16_t, uint8_t> bytes;
};

inline Identity MakeIdentity(uint16_t vendor, uint16_t device, uint8_t revision,
                             uint32_t class_code, uint16_t subsystem_vendor, uint16_t subsystem,
                             bool caps) {
  Identity id;
  auto put = [&](uint16_t offset, uint32_t value, int size) {
    for (int i = 0; i < size; ++i) {
      id.bytes[offset + i] = i < 4 ? static_cast<uint8_t>(value >> (8 * i)) : 0;
    }
  };
  put(pci::kVendorId, vendor, 2);
  put(pci::kDeviceId, device, 2);
  put(pci::kStatus, caps ? pci::kStatusCapabilities : 0, 2);
  put(pci::kRevisionId, revision, 1);
  put(pci::kClassCode, class_code, 3);
  put(pci::kHeaderType, 0, 1);
  put(caps ? pci::kBar0 + 8 : pci::kBar0, 0, caps ? 16 : 24);  // BARs it does not have
  put(pci::kSubsystemVendorId, subsystem_vendor, 2);
  put(pci::kSubsystemId, subsystem, 2);
  put(pci::kRomBar, 0, 4);
  put(pci::kCapabilitiesPointer, caps ? pci::kFirstCapability : 0, 1);
  put(pci::kInterruptPin, 0, 1);
  return id;
}

inline uint32_t ClassOf(uint32_t device_id) {
  return device_id == virtio::kDeviceIdNet     ? 0x020000
         : device_id == virtio::kDeviceIdBlock ? 0x010000
                                               : 0xff0000;
}

}  // namespace kite::fuzz
