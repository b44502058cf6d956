// The VM's PCI side (--transport pci, docs/PCI.md): the root bus with its host bridge, the
// ECAM window and the 0xCF8 ports on the buses, the resources devices take (BAR space in the
// 32-bit window, a KVM GSI per MSI-X vector, both with free), KVM's GSI routing table, and
// VirtioPciFunction: one virtio device as a PCI function with its MSI-X vectors (an MSI route
// and an irqfd each) and one ioeventfd per queue on its notification address.
//
// Nothing assumes the set of devices is fixed after boot: a function takes the lowest free
// slot, BAR range and GSIs and gives them back when it is shut down, and ioeventfds follow
// BAR 0 wherever the guest moves it.
//
// Threads: VmPci and the functions are built and shut down on the Vm's owning thread (a
// control thread, for hotplug). At run time the bus calls a function's BAR observer on the
// vCPU thread that wrote the configuration space; MSI routes change on vCPU threads (MSI-X
// unmask) and interrupts are signalled from the event loop. GsiRouter serialises the routing
// table with its own lock (a leaf).
#pragma once

#include <asio/posix/stream_descriptor.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/bus.h"
#include "devices/pci/address_allocator.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_bus.h"
#include "devices/pci/pci_config_access.h"
#include "virtio/pci_transport.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/event_loop.h"
#include "vmm/kvm.h"

namespace kite {

// KVM's GSI routing table: the irqchip routes KVM starts with plus one MSI route per GSI in
// use. Every change replaces the whole table (KVM_SET_GSI_ROUTING).
class GsiRouter {
 public:
  explicit GsiRouter(VmFd* vm) : vm_(vm) {}
  Result<void> SetMsi(uint32_t gsi, const pci::MsiMessage& message);
  Result<void> Remove(uint32_t gsi);

 private:
  Result<void> CommitLocked();
  VmFd* vm_;
  std::mutex mu_;
  std::map<uint32_t, kvm_irq_routing_entry> msi_;
};

class VmPci {
 public:
  // First GSI for MSI vectors: after the IOAPIC's 24 pins; the last one kite hands out.
  static constexpr uint32_t kFirstMsiGsi = kIoapicPins;
  static constexpr uint32_t kLastMsiGsi = 1023;

  // Registers ECAM on `mmio` and the configuration ports on `pio`, puts the host bridge in
  // slot 0. `ram_end`: the end of guest RAM (the 64-bit window starts above it).
  static Result<std::unique_ptr<VmPci>> Create(VmFd* vm, Bus* mmio, Bus* pio, uint64_t ram_end);
  ~VmPci();

  pci::PciBus& bus() { return *bus_; }
  GsiRouter& router() { return router_; }
  VmFd& vm() { return *vm_; }
  // The DSDT's host bridge, with ACPI PCI hotplug slots 1-31 (docs/PCI.md "Hotplug").
  acpi::PciHostConfig AcpiConfig() const;

  // The lowest slot from 1 that is empty and not in `reserved` (bit n = slot n).
  Result<uint8_t> LowestFreeSlot(uint32_t reserved = 0) const;
  Result<uint64_t> AllocateBar(uint64_t size) { return bars_.Allocate(size, size); }
  void FreeBar(uint64_t address) { bars_.Free(address); }
  Result<uint32_t> AllocateGsi() { return gsis_.Allocate(); }
  void FreeGsi(uint32_t gsi) { gsis_.Free(gsi); }

 private:
  VmPci(VmFd* vm, Bus* mmio, Bus* pio, uint64_t ram_end);

  VmFd* vm_;
  Bus* mmio_;
  Bus* pio_;
  pci::AddressWindow mmio32_;
  pci::AddressWindow mmio64_;
  std::unique_ptr<pci::PciBus> bus_;
  GsiRouter router_;
  pci::AddressAllocator bars_;
  pci::IdAllocator gsis_;
  bool ecam_registered_ = false;
  bool ports_registered_ = false;
};

class KvmMsiVectors;  // vm_pci.cc

// One virtio device as a function on the VM's PCI bus. See the header comment.
class VirtioPciFunction {
 public:
  // `label` names the device in errors and logs ("disk vda (disk.qcow2)"). `slot`: where on
  // the bus (taken: an error); by default the lowest free slot.
  static Result<std::unique_ptr<VirtioPciFunction>> Create(
      VmPci* pci, std::shared_ptr<virtio::VirtioDevice> device, EventLoop* loop,
      const GuestMemory* memory, std::string label, std::optional<uint8_t> slot = std::nullopt);
  ~VirtioPciFunction();

  std::shared_ptr<virtio::PciTransport> transport() const { return transport_; }
  uint8_t slot() const { return slot_; }
  uint64_t bar_address() const { return bar_; }  // as kite assigned it
  // Device reset (waits for in-flight I/O), kicks no longer watched, the slot emptied, BAR
  // range and GSIs given back. Idempotent. `unplug`: also deassign the ioeventfds and remove
  // the MSI routes (hot-unplug; at VM teardown closing the VM fd does both for free).
  void Shutdown(bool unplug = false);
  // Snapshot: PciTransportState as JSON; a restore also re-maps BAR 0 where the guest had it.
  Result<nlohmann::json> SaveState() const;
  Result<void> RestoreState(const nlohmann::json& state);

 private:
  VirtioPciFunction(VmPci* pci, std::string label) : pci_(pci), label_(std::move(label)) {}
  Result<void> Build(std::shared_ptr<virtio::VirtioDevice> device, EventLoop* loop,
                     const GuestMemory* memory, std::optional<uint8_t> slot);
  // BAR observer (under the PciBus lock): moves the ioeventfds to the notify addresses.
  void OnBarMoved(int bar, std::optional<uint64_t> address);
  void SetIoeventfds(std::optional<uint64_t> bar_address);
  void WatchKick(uint16_t queue);

  VmPci* pci_;
  std::string label_;
  std::shared_ptr<virtio::PciTransport> transport_;
  std::shared_ptr<KvmMsiVectors> msi_;
  std::vector<std::unique_ptr<asio::posix::stream_descriptor>> kicks_;  // one per queue
  std::optional<uint64_t> ioeventfd_base_;  // BAR 0 address the ioeventfds are registered at
  uint64_t bar_ = 0;
  uint8_t slot_ = 0;
  bool on_bus_ = false;
  bool shut_down_ = false;
};

}  // namespace kite
