// The VM's PCI bus, GSI routing and virtio-pci functions. See vm_pci.h.
#include "vmm/vm_pci.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/units.h"
#include "devices/pci/pci_host_bridge.h"
#include "vmm/layout.h"
#include "vmm/snapshot/pci_state_json.h"

namespace kite {

// --- GsiRouter ---

Result<void> GsiRouter::SetMsi(uint32_t gsi, const pci::MsiMessage& message) {
  std::lock_guard lock(mu_);
  msi_[gsi] = MsiRoute(gsi, message.address, message.data);
  return CommitLocked();
}

Result<void> GsiRouter::Remove(uint32_t gsi) {
  std::lock_guard lock(mu_);
  if (msi_.erase(gsi) == 0) return {};
  return CommitLocked();
}

Result<void> GsiRouter::CommitLocked() {
  std::vector<kvm_irq_routing_entry> routes = DefaultIrqchipRoutes();
  for (const auto& [gsi, route] : msi_) routes.push_back(route);
  return vm_->SetGsiRouting(routes);
}

// --- VmPci ---

VmPci::VmPci(VmFd* vm, Bus* mmio, Bus* pio, uint64_t ram_end)
    : vm_(vm),
      mmio_(mmio),
      pio_(pio),
      mmio32_{layout::kPciMmio32Base, layout::kPciMmio32Size},
      mmio64_{layout::Pci64WindowBase(ram_end), layout::kPciMmio64Size},
      router_(vm),
      bars_(layout::kPciMmio32Base, layout::kPciMmio32Size),
      gsis_(kFirstMsiGsi, kLastMsiGsi) {}

Result<std::unique_ptr<VmPci>> VmPci::Create(VmFd* vm, Bus* mmio, Bus* pio, uint64_t ram_end) {
  std::unique_ptr<VmPci> pci(new VmPci(vm, mmio, pio, ram_end));
  pci->bus_ = std::make_unique<pci::PciBus>(mmio, std::vector{pci->mmio32_, pci->mmio64_});
  TRY_CTX(pci->bus_->AddDevice(std::make_shared<pci::PciHostBridge>(), {}, 0), "PCI host bridge");
  TRY_CTX(mmio->Register(layout::kPciEcamBase, layout::kPciEcamSize,
                         std::make_shared<pci::PciEcam>(pci->bus_.get())),
          "PCI ECAM window");
  pci->ecam_registered_ = true;
  TRY_CTX(pio->Register(layout::kPciConfigPorts, pci::kConfigPortsSize,
                        std::make_shared<pci::PciConfigPorts>(pci->bus_.get())),
          "PCI configuration ports");
  pci->ports_registered_ = true;
  return pci;
}

VmPci::~VmPci() {
  if (ecam_registered_) mmio_->Unregister(layout::kPciEcamBase);
  if (ports_registered_) pio_->Unregister(layout::kPciConfigPorts);
}

Result<uint8_t> VmPci::LowestFreeSlot(uint32_t reserved) const {
  const uint32_t taken = bus_->occupied_slots() | reserved;
  for (uint8_t slot = 1; slot < 32; ++slot) {
    if ((taken & (1u << slot)) == 0) return slot;
  }
  return Err("no free PCI slot (31 in all)");
}

acpi::PciHostConfig VmPci::AcpiConfig() const {
  return {layout::kPciEcamBase, mmio32_.base, mmio32_.size, mmio64_.base, mmio64_.size, true};
}

// --- MSI-X vectors on KVM ---

// One KVM GSI per vector, with an irqfd: Signal is an eventfd write (no ioctl, no exit), Route
// puts the vector's message in KVM's routing table.
class KvmMsiVectors : public pci::MsiSink {
 public:
  KvmMsiVectors(VmPci* pci, std::string label) : pci_(pci), label_(std::move(label)) {}
  ~KvmMsiVectors() override { Release(false); }

  Result<void> Add(uint16_t count) {
    for (uint16_t v = 0; v < count; ++v) {
      uint32_t gsi = TRY(pci_->AllocateGsi());
      gsis_.push_back(gsi);
      int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) return SysErr("eventfd");
      fds_.emplace_back(fd);
      TRY_CTX(pci_->vm().RegisterIrqfd(fd, gsi), "irqfd for MSI-X vector " + std::to_string(v));
    }
    return {};
  }

  void Route(uint16_t vector, const pci::MsiMessage& message) override {
    if (vector >= gsis_.size()) return;
    if (auto routed = pci_->router().SetMsi(gsis_[vector], message); !routed) {
      KITE_LOG_RATELIMITED(Error, "%s: MSI-X vector %u: %s", label_.c_str(), vector,
                           routed.error().message().c_str());
    }
  }

  void Signal(uint16_t vector) override {
    if (vector >= fds_.size()) return;
    uint64_t one = 1;
    // Fails only when the counter would overflow: the interrupt is pending anyway.
    (void)!::write(fds_[vector].get(), &one, sizeof(one));
  }

  // GSIs given back, and with `remove_routes` their routes too (hot-unplug: a table change
  // per vector; at VM teardown the table goes with the VM). Closing an irqfd's eventfd makes
  // KVM drop the irqfd itself (EPOLLHUP), so no deassign ioctl is needed.
  void Release(bool remove_routes) {
    for (uint32_t gsi : gsis_) {
      if (remove_routes) (void)pci_->router().Remove(gsi);
      pci_->FreeGsi(gsi);
    }
    gsis_.clear();
    fds_.clear();
  }

 private:
  VmPci* pci_;
  std::string label_;
  std::vector<uint32_t> gsis_;
  std::vector<UniqueFd> fds_;
};

// --- VirtioPciFunction ---

Result<std::unique_ptr<VirtioPciFunction>> VirtioPciFunction::Create(
    VmPci* pci, std::shared_ptr<virtio::VirtioDevice> device, EventLoop* loop,
    const GuestMemory* memory, std::string label, std::optional<uint8_t> slot) {
  std::unique_ptr<VirtioPciFunction> f(new VirtioPciFunction(pci, std::move(label)));
  if (auto built = f->Build(std::move(device), loop, memory, slot); !built) {
    f->Shutdown();
    return std::move(built).error();
  }
  return f;
}

Result<void> VirtioPciFunction::Build(std::shared_ptr<virtio::VirtioDevice> device, EventLoop* loop,
                                      const GuestMemory* memory, std::optional<uint8_t> slot) {
  bar_ = TRY(pci_->AllocateBar(virtio::PciTransport::kBarSize));
  msi_ = std::make_shared<KvmMsiVectors>(pci_, label_);
  TRY(msi_->Add(virtio::PciTransport::NumVectors(*device)));
  size_t queues = device->queue_max_sizes().size();
  for (size_t q = 0; q < queues; ++q) {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return SysErr("eventfd");
    kicks_.push_back(std::make_unique<asio::posix::stream_descriptor>(loop->context(), fd));
  }
  virtio::TransportEnv env{&loop->context(), nullptr, memory};
  transport_ = std::make_shared<virtio::PciTransport>(std::move(device), env, bar_, msi_);
  slot_ = TRY(pci_->bus().AddDevice(
      transport_, [this](int bar, std::optional<uint64_t> address) { OnBarMoved(bar, address); },
      slot));
  on_bus_ = true;
  for (uint16_t q = 0; q < kicks_.size(); ++q) WatchKick(q);
  return {};
}

VirtioPciFunction::~VirtioPciFunction() {
  Shutdown();
}

void VirtioPciFunction::OnBarMoved(int bar, std::optional<uint64_t> address) {
  if (bar == virtio::PciTransport::kBar) SetIoeventfds(address);
}

// One ioeventfd per queue at BAR 0 + notify offset + 4·q, for the driver's 16-bit write of the
// queue index (4.1.4.4); any other width still reaches the transport through an exit.
void VirtioPciFunction::SetIoeventfds(std::optional<uint64_t> bar_address) {
  constexpr uint64_t kStride = virtio::PciTransport::kNotifyMultiplier;
  if (ioeventfd_base_) {
    for (size_t q = 0; q < kicks_.size(); ++q) {
      uint64_t addr = *ioeventfd_base_ + virtio::PciTransport::kNotifyOffset + kStride * q;
      (void)pci_->vm().UnregisterIoeventfd(kicks_[q]->native_handle(), addr, 2, false);
    }
    ioeventfd_base_.reset();
  }
  if (!bar_address || shut_down_) return;
  for (size_t q = 0; q < kicks_.size(); ++q) {
    uint64_t addr = *bar_address + virtio::PciTransport::kNotifyOffset + kStride * q;
    if (auto r = pci_->vm().RegisterIoeventfd(kicks_[q]->native_handle(), addr, 2, false); !r) {
      // The kick still works, through an exit to the transport.
      KITE_LOG_RATELIMITED(Warn, "%s: ioeventfd for queue %zu at 0x%s: %s", label_.c_str(), q,
                           ToHex(addr).c_str(), r.error().message().c_str());
    }
  }
  ioeventfd_base_ = bar_address;
}

void VirtioPciFunction::WatchKick(uint16_t queue) {
  kicks_[queue]->async_wait(asio::posix::stream_descriptor::wait_read,
                            [this, queue](const asio::error_code& ec) {
                              if (ec) return;  // cancelled: shutting down
                              uint64_t count;
                              (void)!::read(kicks_[queue]->native_handle(), &count, sizeof(count));
                              transport_->HandleNotify(queue);
                              WatchKick(queue);
                            });
}

// At VM teardown the ioeventfd registrations are not undone one by one (closing the VM fd
// releases them; each deassign costs an SRCU grace period), as for virtio-mmio: they are
// forgotten before the bus unmaps BAR 0. A hot-unplug must deassign them (a stale one would
// catch the next device's kicks at that address): unplug.
void VirtioPciFunction::Shutdown(bool unplug) {
  if (shut_down_) return;
  shut_down_ = true;
  if (unplug) {
    SetIoeventfds(std::nullopt);
  } else {
    ioeventfd_base_.reset();
  }
  if (transport_) transport_->Shutdown();
  for (auto& kick : kicks_) {
    asio::error_code ec;
    kick->cancel(ec);
  }
  if (on_bus_) (void)pci_->bus().RemoveDevice(slot_);
  on_bus_ = false;
  if (msi_) msi_->Release(unplug);
  if (bar_) pci_->FreeBar(bar_);
}

Result<nlohmann::json> VirtioPciFunction::SaveState() const {
  return snapshot::PciTransportStateToJson(TRY(transport_->SavePciState()));
}

Result<void> VirtioPciFunction::RestoreState(const nlohmann::json& state) {
  virtio::PciTransportState parsed = TRY(snapshot::PciTransportStateFromJson(state));
  TRY(transport_->RestorePciState(parsed));
  pci_->bus().Refresh(slot_);  // BAR 0 where the guest had it, the ioeventfds with it
  return {};
}

}  // namespace kite
