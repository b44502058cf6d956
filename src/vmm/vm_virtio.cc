// The VM's virtio-mmio devices: creation from VmConfig, irqfd and ioeventfd wiring, and the
// guest-visible description. See vm_virtio.h.
#include "vmm/vm_virtio.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <asio/posix/stream_descriptor.hpp>
#include <cstring>

#include "base/log.h"
#include "base/units.h"
#include "devices/irq_line.h"
#include "storage/disk_image.h"
#include "virtio/balloon.h"
#include "virtio/block.h"
#include "virtio/mmio_transport.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/virtio_spec.h"
#include "virtio/vsock.h"
#include "vmm/balloon_options.h"
#include "vmm/device_options.h"
#include "vmm/layout.h"
#include "vmm/snapshot/virtio_state_json.h"
#include "vmm/vm_pci.h"
#include "vmm/vsock_options.h"

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

Result<std::shared_ptr<storage::DiskImage>> OpenDisk(const DiskConfig& disk) {
  storage::OpenOptions open;
  open.read_only = disk.read_only;
  open.cache = TRY(storage::ParseCacheMode(disk.cache));
  open.data_file = disk.data_file;
  storage::ImageFormat format = TRY(DiskFormat(disk));
  return std::shared_ptr<storage::DiskImage>(TRY(storage::OpenImage(disk.path, format, open)));
}

Result<std::shared_ptr<virtio::BlockDevice>> CreateDisk(const DiskConfig& disk,
                                                        std::shared_ptr<storage::DiskImage> image,
                                                        const VirtioWiring& w) {
  virtio::BlockOptions options;
  options.serial = disk.serial;
  options.cache = TRY(storage::ParseCacheMode(disk.cache));
  options.num_queues = static_cast<uint16_t>(disk.queues);
  options.throttle = DiskThrottleToLimits(disk.throttle);
  if (!disk.throttle_group.empty()) {
    options.throttle_group = TRY(w.throttle_groups->Join(disk.throttle_group, options.throttle));
  }
  return virtio::CreateVirtioBlock(std::move(image), options, &w.loop->context());
}

// What must not change between a snapshot and its restore: the image's path, format and size,
// and its modification time (a disk written after the snapshot no longer matches the memory).
nlohmann::json DiskIdentity(const storage::DiskImage& image) {
  struct stat st {};
  int64_t mtime_ns = 0;
  if (::stat(image.path().c_str(), &st) == 0) {
    mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  }
  return {{"path", image.path()},
          {"format", storage::ImageFormatName(image.format())},
          {"size", image.size()},
          {"mtime_ns", mtime_ns}};
}

Result<std::shared_ptr<virtio::NetDevice>> CreateNet(const NetConfig& net, asio::io_context* loop) {
  std::unique_ptr<virtio::NetBackend> backend;
  std::vector<std::unique_ptr<virtio::NetBackend>> backends;
  if (net.backend == NetBackendKind::kTap) {
    backends = TRY(virtio::OpenTapQueues({net.tap, net.bridge, net.queues}, loop));
  } else if (net.backend == NetBackendKind::kDgram || net.backend == NetBackendKind::kStream) {
    virtio::SocketNetOptions socket;
    socket.kind = net.backend == NetBackendKind::kDgram ? virtio::SocketNetKind::kDgram
                  : net.server                          ? virtio::SocketNetKind::kStreamServer
                                                        : virtio::SocketNetKind::kStreamClient;
    socket.path = net.socket_path;
    socket.remote = net.remote;
    backend = TRY(virtio::OpenSocketBackend(socket, loop));
  } else {
    virtio::UserNetOptions user;
    for (const std::string& rule : net.hostfwd) {
      user.forwards.push_back(TRY_CTX(virtio::ParseHostForward(rule), "hostfwd " + rule));
    }
    backend = TRY(virtio::OpenUserBackend(user, loop));
  }
  virtio::NetOptions options;
  options.mac = net.mac.empty() ? virtio::GenerateMac() : TRY(virtio::ParseMac(net.mac));
  options.rx_throttle = options.tx_throttle = RateLimitToParams(net.throttle);
  options.mtu = static_cast<uint16_t>(net.mtu);
  options.mac_pinning = net.mac_pinning;
  if (backend) backends.push_back(std::move(backend));
  return virtio::CreateVirtioNet(std::move(backends), options, loop);
}

// One virtio device in the registry: its transport, the irqfd behind its interrupt line and one
// ioeventfd per queue watched by the event loop. A disk is also a LiveDisk.
class VirtioEntry : public VmDevice, public LiveDisk {
 public:
  VirtioEntry(std::string label, DeviceResources resources, VmFd* vm, Bus* mmio)
      : label_(std::move(label)), res_(resources), vm_(vm), mmio_(mmio) {}
  ~VirtioEntry() override { Shutdown(); }

  Result<void> Wire(std::shared_ptr<virtio::VirtioDevice> device, const VirtioWiring& w,
                    std::optional<uint8_t> slot) {
    if (w.pci) {
      // virtio-pci: the function takes its own resources (slot, BAR, MSI GSIs).
      pci_ =
          TRY(VirtioPciFunction::Create(w.pci, std::move(device), w.loop, w.memory, label_, slot));
      transport_ = pci_->transport();
      res_ = {DeviceResources::BusKind::kMmio, pci_->bar_address(), virtio::PciTransport::kBarSize,
              std::nullopt};
      return {};
    }
    UniqueFd irq_fd = TRY(NewEventFd());
    TRY_CTX(vm_->RegisterIrqfd(irq_fd.get(), *res_.gsi),
            "irqfd for GSI " + std::to_string(*res_.gsi));
    irq_ = std::make_shared<IrqfdLine>(std::move(irq_fd));
    virtio::TransportEnv env{&w.loop->context(), irq_, w.memory};
    auto mmio_transport = std::make_shared<virtio::MmioTransport>(std::move(device), env);
    transport_ = mmio_transport;
    TRY(mmio_->Register(res_.base, res_.size, mmio_transport));
    registered_ = true;
    for (uint16_t q = 0; q < transport_->num_queues(); ++q) {
      UniqueFd fd = TRY(NewEventFd());
      TRY_CTX(vm_->RegisterIoeventfd(fd.get(), res_.base + virtio::mmio::kQueueNotify, 4, false, q),
              "ioeventfd for queue " + std::to_string(q));
      kicks_.push_back(
          std::make_unique<asio::posix::stream_descriptor>(w.loop->context(), fd.release()));
      WatchKick(q);
    }
    return {};
  }

  Result<void> Quiesce() override { return transport_->Quiesce(); }
  void Resume() override { transport_->Resume(); }
  Result<nlohmann::json> SaveState() const override {
    if (pci_) return pci_->SaveState();
    return snapshot::TransportStateToJson(TRY(transport_->SaveState()));
  }
  Result<void> RestoreState(const nlohmann::json& state) override {
    if (pci_) return pci_->RestoreState(state);
    virtio::TransportState parsed = TRY(snapshot::TransportStateFromJson(state));
    return transport_->RestoreState(parsed);
  }

  // Stops watching the kicks. The ioeventfd and irqfd registrations are not undone one by
  // one: closing the VM fd releases them all, and each KVM_IOEVENTFD/KVM_IRQFD deassign costs
  // an SRCU grace period (slow under nested virtualization: a VM restart loop on a nested
  // host stalled its kernel that way). Hot-unplug will need the explicit deassign.
  void Shutdown() override {
    if (shut_down_) return;
    shut_down_ = true;
    if (pci_) return pci_->Shutdown();
    if (transport_) transport_->Shutdown();
    for (auto& kick : kicks_) {
      asio::error_code ec;
      kick->cancel(ec);
    }
    if (registered_) mmio_->Unregister(res_.base);
  }

  // Hot-unplug (virtio-pci): the device reset once its in-flight I/O is done, off the bus,
  // its ioeventfds and MSI routes removed, slot, BAR range and GSIs given back.
  void Unplug() {
    if (shut_down_ || !pci_) return Shutdown();
    shut_down_ = true;
    pci_->Shutdown(/*unplug=*/true);
  }

  nlohmann::json Counters() const override {
    virtio::DeviceCounters d = transport_->device().counters();
    virtio::TransportStats t = transport_->stats();
    nlohmann::json out = GenericCounters(d, t);
    if (net) {
      virtio::NetCounters n = net->net_counters();
      out.update({{"rx_filtered", n.rx_filtered},
                  {"tx_spoofed", n.tx_spoofed},
                  {"ctrl_errors", n.ctrl_errors},
                  {"announces", n.announces},
                  {"queue_pairs", net->pairs_in_use()}});
    }
    return out;
  }
  static nlohmann::json GenericCounters(const virtio::DeviceCounters& d,
                                        const virtio::TransportStats& t) {
    return {{"requests", d.requests},
            {"bytes_read", d.bytes_read},
            {"bytes_written", d.bytes_written},
            {"errors", d.errors},
            {"drops", d.drops},
            {"throttled", d.throttled},
            {"kicks", t.notifications},
            {"interrupts", t.interrupts},
            {"resets", t.resets},
            {"protocol_errors", t.protocol_errors}};
  }
  std::string StatsLine() const override {
    virtio::DeviceCounters d = transport_->device().counters();
    virtio::TransportStats t = transport_->stats();
    return "virtio " + label_ + " [" + transport_->device().name() + "]: requests " +
           std::to_string(d.requests) + ", read " + FormatSize(d.bytes_read) + ", written " +
           FormatSize(d.bytes_written) + ", errors " + std::to_string(d.errors) + ", drops " +
           std::to_string(d.drops) + "; kicks " + std::to_string(t.notifications) +
           ", interrupts " + std::to_string(t.interrupts) + ", resets " + std::to_string(t.resets) +
           ", protocol errors " + std::to_string(t.protocol_errors) + "\n";
  }

  // LiveDisk: the transport's quiesce stops the guest's I/O (and flushes the image).
  std::shared_ptr<storage::DiskImage> image() const override {
    return block ? block->image() : nullptr;
  }
  Result<void> Reconfigure(const virtio::BlockDevice::ImageChange& change) override {
    if (!block) return Err(label_ + ": not a disk");
    std::shared_ptr<storage::DiskImage> before = block->image();
    uint64_t old_size = before ? before->size() : 0;
    before.reset();  // `change` may close the chain
    if (auto quiesced = transport_->Quiesce(); !quiesced) {
      transport_->Resume();
      return std::move(quiesced).error().Context(label_);
    }
    Result<void> done = block->ReplaceImage(change);
    transport_->Resume();
    std::shared_ptr<storage::DiskImage> after = block->image();
    if (after && after->size() != old_size) transport_->NotifyConfigChanged();
    if (!done) return std::move(done).error().Context(label_);
    return {};
  }

  const DeviceResources& resources() const { return res_; }
  std::optional<uint8_t> pci_slot() const {
    return pci_ ? std::optional<uint8_t>(pci_->slot()) : std::nullopt;
  }
  const virtio::TransportCore& transport() const { return *transport_; }
  std::weak_ptr<virtio::TransportCore> weak_transport() const { return transport_; }
  virtio::TransportCore& transport() { return *transport_; }
  // Disks: the configuration and the device (its image changes with live snapshots and
  // block jobs); NICs: the device, for set_link.
  DiskConfig disk;
  std::shared_ptr<virtio::BlockDevice> block;
  std::shared_ptr<virtio::NetDevice> net;
  std::shared_ptr<virtio::BalloonDevice> balloon;

 private:
  // Reads the eventfd's counter and serves the queue, then waits for the next kick.
  void WatchKick(uint16_t queue) {
    kicks_[queue]->async_wait(
        asio::posix::stream_descriptor::wait_read, [this, queue](const asio::error_code& ec) {
          if (ec) return;  // cancelled: shutting down
          uint64_t count;
          (void)!::read(kicks_[queue]->native_handle(), &count, sizeof(count));
          transport_->HandleNotify(queue);
          WatchKick(queue);
        });
  }

  std::string label_;  // "vda (disk.qcow2)", "net0", "rng0"
  DeviceResources res_;
  VmFd* vm_;
  Bus* mmio_;
  std::shared_ptr<virtio::TransportCore> transport_;  // mmio or pci
  std::unique_ptr<VirtioPciFunction> pci_;            // --transport pci
  std::shared_ptr<IrqfdLine> irq_;
  std::vector<std::unique_ptr<asio::posix::stream_descriptor>> kicks_;  // one per queue
  bool registered_ = false;
  bool shut_down_ = false;
};

// Every virtio entry in the registry, in order.
template <typename Fn>
void ForEachVirtio(const DeviceRegistry& registry, Fn fn) {
  for (const auto& e : registry.entries()) {
    if (e->kind.rfind("virtio-", 0) == 0) fn(*e, static_cast<const VirtioEntry&>(*e->device));
  }
}

// What MakeEntry registers besides the transport: a disk's configuration and device, a NIC's
// device.
struct EntryExtras {
  const DiskConfig* disk = nullptr;
  std::shared_ptr<virtio::BlockDevice> block;
  std::shared_ptr<virtio::NetDevice> net;
  std::shared_ptr<virtio::BalloonDevice> balloon;
};

// Where the device with `id` goes on the PCI bus: the slot the configuration gives it (a
// snapshot's config names every device's), else the lowest one neither taken nor named for
// another device. nullopt for virtio-mmio.
Result<std::optional<uint8_t>> PlannedSlot(const VirtioWiring& w, const std::string& id) {
  if (!w.pci) return std::optional<uint8_t>();
  if (auto it = w.config->pci_slots.find(id); it != w.config->pci_slots.end()) {
    return std::optional<uint8_t>(static_cast<uint8_t>(it->second));
  }
  uint32_t named = 0;
  for (const auto& [other, slot] : w.config->pci_slots) named |= 1u << slot;
  return std::optional<uint8_t>(TRY(w.pci->LowestFreeSlot(named)));
}

// The registry entry of one virtio device behind its transport.
template <typename Device>
Result<DeviceEntry> MakeEntry(const VirtioWiring& w, std::string id, std::string kind,
                              std::string label, Result<std::shared_ptr<Device>> device,
                              std::optional<uint8_t> slot, EntryExtras extras = {}) {
  if (!device) return std::move(device).error().Context(label);
  // virtio-mmio takes a window and a GSI here; a virtio-pci function its own (vm_pci.h).
  DeviceResources res;
  if (!w.pci) res = TRY_CTX(w.allocator->AllocateVirtio(), label);
  auto entry = std::make_unique<VirtioEntry>(label, res, w.vm, w.mmio);
  if (auto wired = entry->Wire(*device, w, slot); !wired) {
    if (!w.pci) w.allocator->Release(res);
    return std::move(wired).error().Context(label);
  }
  res = entry->resources();
  if (extras.disk) entry->disk = *extras.disk;
  entry->block = std::move(extras.block);
  entry->net = std::move(extras.net);
  if (entry->net) {  // announce raises the configuration interrupt itself
    entry->net->SetConfigNotifier([transport = entry->weak_transport()] {
      if (auto t = transport.lock()) t->NotifyConfigChanged();
    });
  }
  entry->balloon = std::move(extras.balloon);
  return DeviceEntry{std::move(id), std::move(kind), res, std::move(entry)};
}

VirtioEntry* FindEntry(const DeviceRegistry& registry, const std::string& id) {
  for (const auto& e : registry.entries()) {
    if (e->id == id && e->kind.rfind("virtio-", 0) == 0) {
      return static_cast<VirtioEntry*>(e->device.get());
    }
  }
  return nullptr;
}

// The memory balloon (virtio/balloon.h) as config.balloon describes it.
Result<DeviceEntry> BalloonEntry(const VirtioWiring& w, const BalloonConfig& b) {
  std::string id = cli::BalloonId(b);
  std::optional<uint8_t> slot = TRY_CTX(PlannedSlot(w, id), id);
  virtio::BalloonOptions options;
  options.target_pages = static_cast<uint32_t>(b.size >> 12);
  options.deflate_on_oom = b.deflate_on_oom;
  options.free_page_reporting = b.free_page_reporting;
  options.stats_interval_s = b.statistics_interval;
  options.host_page_size = w.memory->page_size();
  auto device = virtio::CreateVirtioBalloon(options, &w.loop->context());
  EntryExtras extras;
  extras.balloon = device ? *device : nullptr;
  return MakeEntry(w, id, "virtio-balloon", id, std::move(device), slot, std::move(extras));
}

}  // namespace

Result<DeviceEntry> CreateVirtioDisk(const VirtioWiring& w, const DiskConfig& disk,
                                     const std::string& id, std::optional<uint8_t> slot) {
  std::string label = "disk " + id + " (" + disk.path + ")";
  if (!slot) slot = TRY_CTX(PlannedSlot(w, id), label);
  auto image = OpenDisk(disk);
  if (!image) return std::move(image).error().Context(label);
  auto device = CreateDisk(disk, *image, w);
  EntryExtras extras{&disk, device ? *device : nullptr, nullptr, nullptr};
  return MakeEntry(w, id, "virtio-blk", label, std::move(device), slot, std::move(extras));
}

Result<DeviceEntry> CreateVirtioNet(const VirtioWiring& w, const NetConfig& net,
                                    const std::string& id, std::optional<uint8_t> slot) {
  std::string label = "net " + id;
  if (!slot) slot = TRY_CTX(PlannedSlot(w, id), label);
  auto device = CreateNet(net, &w.loop->context());
  EntryExtras extras{nullptr, nullptr, device ? *device : nullptr, nullptr};
  return MakeEntry(w, id, "virtio-net", label, std::move(device), slot, std::move(extras));
}

Result<void> AddVirtioDevices(const VirtioWiring& w) {
  const VmConfig& c = *w.config;
  for (size_t i = 0; i < c.disks.size(); ++i) {
    TRY(w.registry->Add(TRY(CreateVirtioDisk(w, c.disks[i], cli::DiskId(c, i), std::nullopt))));
  }
  for (size_t i = 0; i < c.nets.size(); ++i) {
    TRY(w.registry->Add(TRY(CreateVirtioNet(w, c.nets[i], cli::NetId(c, i), std::nullopt))));
  }
  if (c.rng) {
    std::optional<uint8_t> slot = TRY_CTX(PlannedSlot(w, "rng0"), "rng0");
    TRY(w.registry->Add(TRY(MakeEntry(w, "rng0", "virtio-rng", "rng0",
                                      virtio::CreateVirtioRng(&w.loop->context()), slot))));
  }
  if (c.vsock) {
    std::optional<uint8_t> slot = TRY_CTX(PlannedSlot(w, cli::kVsockId), cli::kVsockId);
    virtio::VsockOptions options{c.vsock->cid, c.vsock->uds_path};
    TRY(w.registry->Add(
        TRY(MakeEntry(w, cli::kVsockId, "virtio-vsock", "vsock0 (" + c.vsock->uds_path + ")",
                      virtio::CreateVirtioVsock(options, &w.loop->context()), slot))));
  }
  if (c.balloon) TRY(w.registry->Add(TRY(BalloonEntry(w, *c.balloon))));
  return {};
}

std::optional<uint8_t> VirtioPciSlot(const DeviceEntry& entry) {
  if (entry.kind.rfind("virtio-", 0) != 0) return std::nullopt;
  return static_cast<const VirtioEntry&>(*entry.device).pci_slot();
}

void UnplugVirtio(std::unique_ptr<DeviceEntry> entry, EventLoop& loop) {
  if (!entry || entry->kind.rfind("virtio-", 0) != 0) return;
  static_cast<VirtioEntry&>(*entry->device).Unplug();
  // What is left (the backend: tap descriptor, slirp timers; the kick watchers) belongs to the
  // event loop: it is destroyed there, never under a handler of its own.
  loop.RunAndWait(
      [entry = std::shared_ptr<DeviceEntry>(std::move(entry))]() mutable { entry.reset(); });
}

std::map<std::string, uint32_t> VirtioPciSlots(const DeviceRegistry& registry) {
  std::map<std::string, uint32_t> out;
  for (const auto& e : registry.entries()) {
    if (std::optional<uint8_t> slot = VirtioPciSlot(*e)) out[e->id] = *slot;
  }
  return out;
}

std::vector<acpi::VirtioMmioDevice> VirtioAcpiDevices(const DeviceRegistry& registry) {
  std::vector<acpi::VirtioMmioDevice> out;
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry&) {
    if (!e.resources.gsi) return;  // virtio-pci: the guest finds it on the PCI bus
    out.push_back({e.resources.base, e.resources.size, *e.resources.gsi});
  });
  return out;
}

std::string VirtioKernelCmdline(const DeviceRegistry& registry) {
  std::string out;
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry&) {
    if (!e.resources.gsi) return;  // virtio-pci (never without ACPI)
    out += " virtio_mmio.device=4K@0x" + ToHex(e.resources.base) + ":" +
           std::to_string(*e.resources.gsi);
  });
  return out;
}

std::shared_ptr<virtio::BalloonDevice> FindBalloon(const DeviceRegistry& registry,
                                                   std::string* id) {
  std::shared_ptr<virtio::BalloonDevice> found;
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry& v) {
    if (!v.balloon || found) return;
    found = v.balloon;
    if (id) *id = e.id;
  });
  return found;
}

Result<void> SetBalloonTarget(const DeviceRegistry& registry, uint32_t pages) {
  for (const auto& e : registry.entries()) {
    if (e->kind != "virtio-balloon") continue;
    auto& entry = static_cast<VirtioEntry&>(*e->device);
    entry.balloon->SetTarget(pages);
    entry.transport().NotifyConfigChanged();
    return {};
  }
  return Err(ErrorKind::kDeviceNotActive, "No balloon device has been activated");
}

LiveDisk* FindLiveDisk(const DeviceRegistry& registry, const std::string& id) {
  VirtioEntry* entry = FindEntry(registry, id);
  return entry && entry->block ? entry : nullptr;
}

Result<void> SetNetLink(const DeviceRegistry& registry, const std::string& id, bool up) {
  VirtioEntry* entry = FindEntry(registry, id);
  if (!entry || !entry->net) {
    return Err(ErrorKind::kDeviceNotFound, "Device '" + id + "' not found");
  }
  if (entry->net->link_up() == up) return {};
  entry->net->SetLink(up);
  entry->transport().NotifyConfigChanged();
  return {};
}

Result<void> CheckAnnounceRequest(const AnnounceRequest& request) {
  return virtio::CheckAnnounceParams({request.initial, request.max, request.rounds, request.step});
}

Result<void> AnnounceNets(const DeviceRegistry& registry, const AnnounceRequest& request) {
  TRY(CheckAnnounceRequest(request));
  virtio::AnnounceParams params{request.initial, request.max, request.rounds, request.step};
  for (const std::string& id : request.interfaces) {
    VirtioEntry* entry = FindEntry(registry, id);
    if (!entry || !entry->net) {
      return Err(ErrorKind::kDeviceNotFound, "Device '" + id + "' not found");
    }
  }
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry& entry) {
    bool named = request.interfaces.empty() ||
                 std::find(request.interfaces.begin(), request.interfaces.end(), e.id) !=
                     request.interfaces.end();
    if (entry.net && named) entry.net->Announce(params);
  });
  return {};
}

RateLimitParams RateLimitToParams(const Throttle& r) {
  return {.bytes = {.rate = r.bps, .capacity = r.bps_max, .one_time_burst = r.bps_burst},
          .ops = {.rate = r.ops, .capacity = r.ops_max, .one_time_burst = r.ops_burst}};
}

Throttle ParamsToRateLimit(const RateLimitParams& p) {
  return {.bps = p.bytes.rate,
          .bps_max = p.bytes.capacity,
          .bps_burst = p.bytes.one_time_burst,
          .ops = p.ops.rate,
          .ops_max = p.ops.capacity,
          .ops_burst = p.ops.one_time_burst};
}

virtio::ThrottleLimits DiskThrottleToLimits(const DiskThrottle& t) {
  return {RateLimitToParams(t.total), RateLimitToParams(t.read), RateLimitToParams(t.write)};
}

DiskThrottle LimitsToDiskThrottle(const virtio::ThrottleLimits& l) {
  return {ParamsToRateLimit(l.total), ParamsToRateLimit(l.read), ParamsToRateLimit(l.write)};
}

Result<std::string> SetDiskThrottle(const DeviceRegistry& registry, virtio::ThrottleGroups& groups,
                                    const std::string& id, const DiskThrottle& limit,
                                    const std::optional<std::string>& group) {
  VirtioEntry* entry = FindEntry(registry, id);
  if (!entry || !entry->block) {
    return Err(ErrorKind::kDeviceNotFound, "Device '" + id + "' not found");
  }
  const virtio::ThrottleLimits limits = DiskThrottleToLimits(limit);
  const std::string name = group ? *group : entry->disk.throttle_group;
  if (name.empty()) {
    entry->block->SetThrottle(limits);
    return name;
  }
  std::shared_ptr<virtio::ThrottleBuckets> buckets = groups.SetLimits(name, limits);
  if (name != entry->disk.throttle_group) {
    entry->block->SetThrottleGroup(buckets);
    entry->disk.throttle_group = name;
  }
  // Every member's waiting requests try again under the new limits at once.
  for (const auto& e : registry.entries()) {
    VirtioEntry* member = FindEntry(registry, e->id);
    if (member && member->block && member->disk.throttle_group == name) {
      member->block->SetThrottle(limits);
    }
  }
  return name;
}

Result<void> SetNetThrottle(const DeviceRegistry& registry, const std::string& id,
                            const Throttle& limit) {
  VirtioEntry* entry = FindEntry(registry, id);
  if (!entry || !entry->net) {
    return Err(ErrorKind::kDeviceNotFound, "Device '" + id + "' not found");
  }
  entry->net->SetThrottle(RateLimitToParams(limit), RateLimitToParams(limit));
  return {};
}

std::vector<NetThrottleInfo> QueryNetThrottles(const DeviceRegistry& registry) {
  std::vector<NetThrottleInfo> out;
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry& v) {
    if (v.net) out.push_back({e.id, ParamsToRateLimit(v.net->tx_throttle())});
  });
  return out;
}

std::vector<BlockInfo> QueryBlocks(const DeviceRegistry& registry) {
  std::vector<BlockInfo> out;
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry& v) {
    std::shared_ptr<storage::DiskImage> image = v.image();
    if (!image) return;
    BlockInfo info;
    info.id = e.id;
    info.read_only = image->read_only();
    info.cache = v.disk.cache;
    info.io_error = image->failed();
    if (v.block) info.throttle = LimitsToDiskThrottle(v.block->throttle());
    info.throttle_group = v.disk.throttle_group;
    for (const storage::DiskImage* layer = image.get(); layer; layer = layer->backing()) {
      ImageInfo image;
      image.filename = layer->path();
      image.format = storage::ImageFormatName(layer->format());
      image.virtual_size = layer->size();
      image.actual_size = layer->allocated_bytes();
      if (layer->backing()) image.backing_filename = layer->backing()->path();
      info.chain.push_back(std::move(image));
    }
    out.push_back(std::move(info));
  });
  return out;
}

std::vector<BlockStats> QueryBlockStats(const DeviceRegistry& registry) {
  std::vector<BlockStats> out;
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry& v) {
    if (!v.block) return;
    virtio::DeviceCounters d = v.transport().device().counters();
    BlockStats stats;
    stats.id = e.id;
    stats.rd_bytes = d.bytes_read;
    stats.wr_bytes = d.bytes_written;
    stats.rd_operations = d.reads;
    stats.wr_operations = d.writes;
    stats.flush_operations = d.flushes;
    stats.discard_operations = d.discards;
    stats.failed_operations = d.errors;
    out.push_back(stats);
  });
  return out;
}

nlohmann::json DiskIdentities(const DeviceRegistry& registry) {
  nlohmann::json out = nlohmann::json::object();
  ForEachVirtio(registry, [&](const DeviceEntry& e, const VirtioEntry& v) {
    std::shared_ptr<storage::DiskImage> image = v.image();
    if (!image) return;
    out[e.id] = DiskIdentity(*image);
  });
  return out;
}

}  // namespace kite
