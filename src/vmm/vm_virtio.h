// The VM's virtio devices: built from VmConfig (disks, then network interfaces, then the
// entropy device), each registered in the DeviceRegistry behind a transport. With
// --transport pci each is a virtio-pci function on the VM's PCI bus (vm_pci.h: a slot, BAR 0
// in the PCI window, MSI-X vectors, ioeventfds on its notify addresses); by default each sits
// behind a virtio-mmio transport on the MMIO bus, with
//   * one window of layout::kVirtioMmioSize from the ResourceAllocator,
//   * one interrupt line (a GSI from kVirtioGsis) fed through an irqfd: no exit to raise it,
//   * one ioeventfd per queue on the QueueNotify register (datamatch = queue index), watched
//     by the event loop: a kick costs the vCPU no exit to userspace.
// The guest finds them in the DSDT (LNRO0005) or, with --no-acpi, through
// `virtio_mmio.device=` items this file adds to the kernel command line — never both.
//
// With PCI the guest finds the devices by scanning the bus (the DSDT has the host bridge).
//
// Threads: built and shut down on the Vm's owning thread; the transports then serve vCPU
// threads (registers) and the event loop (queues).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/bus.h"
#include "kite/kite.h"
#include "storage/disk_image.h"
#include "virtio/balloon.h"
#include "virtio/block.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/device_registry.h"
#include "vmm/event_loop.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"

namespace kite {

class VmPci;  // vm_pci.h

// Interrupt lines for virtio devices, handed out lowest first (ResourceAllocator): the IOAPIC
// pins no legacy device uses (0 timer, 1 keyboard, 2 cascade, 3/4 serial, 8 RTC, 9 GED, ...).
inline constexpr uint32_t kVirtioGsis[] = {5,  6,  7,  10, 11, 12, 13, 14, 15,
                                           16, 17, 18, 19, 20, 21, 22, 23};
static_assert(std::size(kVirtioGsis) >= kMaxVirtioDevices);

struct VirtioWiring {
  const VmConfig* config = nullptr;
  VmFd* vm = nullptr;
  Bus* mmio = nullptr;
  const GuestMemory* memory = nullptr;
  EventLoop* loop = nullptr;
  DeviceRegistry* registry = nullptr;
  ResourceAllocator* allocator = nullptr;
  VmPci* pci = nullptr;  // set: virtio-pci functions on this bus instead of virtio-mmio
  virtio::ThrottleGroups* throttle_groups = nullptr;  // the disks' group= (DiskConfig)
};

// Opens the images and network backends of config->disks, ->nets and the entropy device, and
// registers each behind its transport (ids "vda".. or DiskConfig::id, "net0".. or
// NetConfig::id, "rng0"). An error names the device ("disk vda (disk.qcow2): ...").
// With PCI each device goes to the slot config->pci_slots gives its id, or else to the lowest
// slot that is free and not named there.
Result<void> AddVirtioDevices(const VirtioWiring& wiring);

// One disk or NIC behind its transport, not yet in the registry (hotplug adds it): in PCI slot
// `slot`, or as AddVirtioDevices would place it.
Result<DeviceEntry> CreateVirtioDisk(const VirtioWiring& wiring, const DiskConfig& disk,
                                     const std::string& id, std::optional<uint8_t> slot);
Result<DeviceEntry> CreateVirtioNet(const VirtioWiring& wiring, const NetConfig& net,
                                    const std::string& id, std::optional<uint8_t> slot);
// The PCI slot of a virtio device; nullopt for virtio-mmio and other devices.
std::optional<uint8_t> VirtioPciSlot(const DeviceEntry& entry);
// Hot-unplug of a device taken out of the registry: waits for its in-flight I/O, resets it,
// empties its slot and gives its resources back, then destroys it (its backend closed) on the
// event loop. Returns when it is gone (or the loop stopped: then it goes with the loop).
void UnplugVirtio(std::unique_ptr<DeviceEntry> entry, EventLoop& loop);
// Every virtio-pci device's slot by id (what a snapshot's config records).
std::map<std::string, uint32_t> VirtioPciSlots(const DeviceRegistry& registry);

// For the DSDT, and " virtio_mmio.device=4K@0xd0000000:5 ..." for --no-acpi.
std::vector<acpi::VirtioMmioDevice> VirtioAcpiDevices(const DeviceRegistry& registry);
std::string VirtioKernelCmdline(const DeviceRegistry& registry);

// A running VM's disk as the live operations see it: live snapshots, block jobs and
// block_resize (machine_disks.cc).
class LiveDisk {
 public:
  virtual ~LiveDisk() = default;
  // The image the guest's requests go to now (null only after a failed replacement).
  virtual std::shared_ptr<storage::DiskImage> image() const = 0;
  // Stops the guest's I/O to the disk (requests in flight complete, the image is flushed),
  // runs `change` — which may replace the image (virtio::BlockDevice::ReplaceImage) — and lets
  // the I/O go on; raises the configuration-change interrupt when the size changed. On a
  // control thread or a job's thread, never the event loop.
  virtual Result<void> Reconfigure(const virtio::BlockDevice::ImageChange& change) = 0;
};

// The disk `id`; nullptr when there is none.
LiveDisk* FindLiveDisk(const DeviceRegistry& registry, const std::string& id);
// set_link: NIC `id`'s link status, with a configuration-change interrupt when it changed.
// No such NIC: "Device 'id' not found" (DeviceNotFound).
Result<void> SetNetLink(const DeviceRegistry& registry, const std::string& id, bool up);
// announce-self: the NICs in request.interfaces (all when empty) announce themselves
// (virtio::NetDevice::Announce). Parameters out of QEMU's ranges, or an unknown NIC: an error
// and nobody announces.
Result<void> AnnounceNets(const DeviceRegistry& registry, const AnnounceRequest& request);
// QEMU's ranges for announce-self's parameters (an error names the parameter).
Result<void> CheckAnnounceRequest(const AnnounceRequest& request);

// Rate limits: the device's settings from the configuration's, and back.
RateLimitParams RateLimitToParams(const Throttle& limit);
Throttle ParamsToRateLimit(const RateLimitParams& params);
virtio::ThrottleLimits DiskThrottleToLimits(const DiskThrottle& limit);
DiskThrottle LimitsToDiskThrottle(const virtio::ThrottleLimits& limits);
// block_set_io_throttle and x-kite-set-net-throttle: the device's new limits (applied on the
// event loop; NICs: both directions). No such disk or NIC: "Device 'id' not found".
// A disk in a throttle group: the group's limits (every member's). `group` given: the disk
// moves to that group (made when new) first. Returns the disk's group ("" for none).
Result<std::string> SetDiskThrottle(const DeviceRegistry& registry, virtio::ThrottleGroups& groups,
                                    const std::string& id, const DiskThrottle& limit,
                                    const std::optional<std::string>& group);
Result<void> SetNetThrottle(const DeviceRegistry& registry, const std::string& id,
                            const Throttle& limit);

// The memory balloon, nullptr when the VM has none (`id`: its device id); and QMP `balloon`:
// its new num_pages with a configuration-change interrupt (DeviceNotActive without one).
std::shared_ptr<virtio::BalloonDevice> FindBalloon(const DeviceRegistry& registry,
                                                   std::string* id = nullptr);
Result<void> SetBalloonTarget(const DeviceRegistry& registry, uint32_t pages);

// x-kite-query-net-throttle: every NIC's limit (its TX one; both directions have the same).
std::vector<NetThrottleInfo> QueryNetThrottles(const DeviceRegistry& registry);
// query-block and query-blockstats.
std::vector<BlockInfo> QueryBlocks(const DeviceRegistry& registry);
std::vector<BlockStats> QueryBlockStats(const DeviceRegistry& registry);
// The disks' image files and identities, for snapshots: {"<id>": {"path", "format", "size",
// "mtime_ns"}}; and the check that they are unchanged at restore.
nlohmann::json DiskIdentities(const DeviceRegistry& registry);

}  // namespace kite
