// The VM's virtio-mmio devices: creation from VmConfig, irqfd and ioeventfd wiring, and the
// guest-visible description. See vm_virtio.h.
#include "vmm/vm_virtio.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <asio/posix/stream_descriptor.hpp>
#include <cstring>

#include "base/log.h"
#include "base/units.h"
#include "devices/irq_line.h"
#include "storage/disk_image.h"
#include "virtio/block.h"
#include "virtio/mmio_transport.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/virtio_spec.h"
#include "vmm/layout.h"

namespace kite {
namespace {

// An edge on a GSI of the in-kernel IOAPIC through an irqfd: a write to the eventfd, no exit.
class IrqfdLine : public IrqLine {
 public:
  explicit IrqfdLine(UniqueFd fd) : fd_(std::move(fd)) {}
  void SetLevel(bool asserted) override {
    if (asserted) Pulse();
  }
  void Pulse() override {
    uint64_t one = 1;
    // Fails only when the counter would overflow (2^64 - 2 pending): the interrupt is pending
    // anyway, so there is nothing to do.
    (void)!::write(fd_.get(), &one, sizeof(one));
  }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

Result<UniqueFd> NewEventFd() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return SysErr("eventfd");
  return UniqueFd(fd);
}

// A read-only disk may leave its format out: then it is probed (storage::ProbeImageFormat).
// A writable one never gets here without a format (ValidateDisk).
Result<storage::ImageFormat> DiskFormat(const DiskConfig& disk) {
  if (!disk.format.empty()) return storage::ParseImageFormat(disk.format);
  return storage::ProbeImageFormat(disk.path);
}

Result<std::shared_ptr<virtio::VirtioDevice>> CreateDisk(const DiskConfig& disk,
                                                         asio::io_context* loop) {
  storage::OpenOptions open;
  open.read_only = disk.read_only;
  open.cache = TRY(storage::ParseCacheMode(disk.cache));
  storage::ImageFormat format = TRY(DiskFormat(disk));
  std::shared_ptr<storage::DiskImage> image = TRY(storage::OpenImage(disk.path, format, open));
  virtio::BlockOptions options;
  options.serial = disk.serial;
  options.cache = open.cache;
  options.num_queues = static_cast<uint16_t>(disk.queues);
  return virtio::CreateVirtioBlock(std::move(image), options, loop);
}

Result<std::shared_ptr<virtio::VirtioDevice>> CreateNet(const NetConfig& net,
                                                        asio::io_context* loop) {
  std::unique_ptr<virtio::NetBackend> backend;
  if (net.backend == NetBackendKind::kTap) {
    backend = TRY(virtio::OpenTapBackend({net.tap}, loop));
  } else {
    virtio::UserNetOptions user;
    for (const std::string& rule : net.hostfwd) {
      user.forwards.push_back(TRY_CTX(virtio::ParseHostForward(rule), "hostfwd " + rule));
    }
    backend = TRY(virtio::OpenUserBackend(user, loop));
  }
  virtio::NetOptions options;
  options.mac = net.mac.empty() ? virtio::GenerateMac() : TRY(virtio::ParseMac(net.mac));
  return virtio::CreateVirtioNet(std::move(backend), options, loop);
}

}  // namespace

struct VirtioDevices::Slot {
  uint32_t index = 0;
  uint64_t base = 0;
  uint32_t gsi = 0;
  std::string name;  // "vda", "eth0", "rng"
  VmFd* vm = nullptr;
  std::shared_ptr<virtio::MmioTransport> transport;
  std::shared_ptr<IrqfdLine> irq;
  std::vector<std::unique_ptr<asio::posix::stream_descriptor>> kicks;  // one per queue

  // Reads the eventfd's counter and serves the queue, then waits for the next kick.
  void WatchKick(uint16_t queue) {
    kicks[queue]->async_wait(asio::posix::stream_descriptor::wait_read,
                             [this, queue](const asio::error_code& ec) {
                               if (ec) return;  // cancelled: shutting down
                               uint64_t count;
                               (void)!::read(kicks[queue]->native_handle(), &count, sizeof(count));
                               transport->HandleNotify(queue);
                               WatchKick(queue);
                             });
  }

  Result<void> Wire(const VirtioWiring& w) {
    UniqueFd irq_fd = TRY(NewEventFd());
    TRY_CTX(w.vm->RegisterIrqfd(irq_fd.get(), gsi), "irqfd for GSI " + std::to_string(gsi));
    irq = std::make_shared<IrqfdLine>(std::move(irq_fd));
    return {};
  }

  Result<void> WireKicks(EventLoop* loop) {
    for (uint16_t q = 0; q < transport->num_queues(); ++q) {
      UniqueFd fd = TRY(NewEventFd());
      TRY_CTX(vm->RegisterIoeventfd(fd.get(), base + virtio::mmio::kQueueNotify, 4, false, q),
              "ioeventfd for queue " + std::to_string(q));
      kicks.push_back(
          std::make_unique<asio::posix::stream_descriptor>(loop->context(), fd.release()));
      WatchKick(q);
    }
    return {};
  }

  // Stops watching the kicks. The ioeventfd and irqfd registrations are not undone one by
  // one: closing the VM fd releases them all, and each KVM_IOEVENTFD/KVM_IRQFD deassign costs
  // an SRCU grace period (slow under nested virtualization: a VM restart loop on a nested
  // host stalled its kernel that way). Hot-unplug will need the explicit deassign.
  void Unwire() {
    for (auto& kick : kicks) {
      asio::error_code ec;
      kick->cancel(ec);
    }
  }
};

Result<std::unique_ptr<VirtioDevices>> VirtioDevices::Create(const VirtioWiring& w) {
  std::unique_ptr<VirtioDevices> set(new VirtioDevices());
  set->mmio_ = w.mmio;
  asio::io_context* io = &w.loop->context();
  const VmConfig& c = *w.config;
  auto add = [&](std::string name,
                 Result<std::shared_ptr<virtio::VirtioDevice>> device) -> Result<void> {
    if (!device) return Err(name + ": " + device.error().message());
    auto slot = std::make_unique<Slot>();
    slot->index = static_cast<uint32_t>(set->slots_.size());
    slot->base = layout::kVirtioMmioBase + slot->index * layout::kVirtioMmioSize;
    slot->gsi = kVirtioGsis[slot->index];
    slot->name = std::move(name);
    slot->vm = w.vm;
    TRY_CTX(slot->Wire(w), slot->name);
    virtio::TransportEnv env{io, slot->irq, w.memory};
    slot->transport = std::make_shared<virtio::MmioTransport>(std::move(*device), env);
    TRY_CTX(w.mmio->Register(slot->base, layout::kVirtioMmioSize, slot->transport), slot->name);
    set->slots_.push_back(std::move(slot));
    TRY_CTX(set->slots_.back()->WireKicks(w.loop), set->slots_.back()->name);
    return {};
  };
  for (size_t i = 0; i < c.disks.size(); ++i) {
    std::string name =
        "disk vd" + std::string(1, static_cast<char>('a' + i)) + " (" + c.disks[i].path + ")";
    TRY(add(name, CreateDisk(c.disks[i], io)));
  }
  for (size_t i = 0; i < c.nets.size(); ++i) {
    TRY(add("net " + std::to_string(i), CreateNet(c.nets[i], io)));
  }
  if (c.rng) TRY(add("rng", virtio::CreateVirtioRng(io)));
  return set;
}

VirtioDevices::~VirtioDevices() {
  Shutdown();
}

std::vector<acpi::VirtioMmioDevice> VirtioDevices::AcpiDevices() const {
  std::vector<acpi::VirtioMmioDevice> out;
  for (const auto& slot : slots_) out.push_back({slot->base, layout::kVirtioMmioSize, slot->gsi});
  return out;
}

std::string VirtioDevices::KernelCmdline() const {
  std::string out;
  for (const auto& slot : slots_) {
    out += " virtio_mmio.device=4K@0x" + ToHex(slot->base) + ":" + std::to_string(slot->gsi);
  }
  return out;
}

void VirtioDevices::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  for (auto& slot : slots_) {
    slot->transport->Shutdown();
    slot->Unwire();
    mmio_->Unregister(slot->base);
  }
}

std::string VirtioDevices::StatsReport() const {
  std::string out;
  for (const auto& slot : slots_) {
    virtio::DeviceCounters d = slot->transport->device().counters();
    virtio::TransportStats t = slot->transport->stats();
    out += "virtio " + slot->name + " [" + slot->transport->device().name() + "]: requests " +
           std::to_string(d.requests) + ", read " + FormatSize(d.bytes_read) + ", written " +
           FormatSize(d.bytes_written) + ", errors " + std::to_string(d.errors) + ", drops " +
           std::to_string(d.drops) + "; kicks " + std::to_string(t.notifications) +
           ", interrupts " + std::to_string(t.interrupts) + ", resets " + std::to_string(t.resets) +
           ", protocol errors " + std::to_string(t.protocol_errors) + "\n";
  }
  return out;
}

}  // namespace kite
