// The VM's virtio-mmio devices: built from VmConfig (disks, then network interfaces, then the
// entropy device), each behind a virtio-mmio transport on the MMIO bus and registered in the
// DeviceRegistry, with
//   * one window of layout::kVirtioMmioSize from the ResourceAllocator,
//   * one interrupt line (a GSI from kVirtioGsis) fed through an irqfd: no exit to raise it,
//   * one ioeventfd per queue on the QueueNotify register (datamatch = queue index), watched
//     by the event loop: a kick costs the vCPU no exit to userspace.
// The guest finds them in the DSDT (LNRO0005) or, with --no-acpi, through
// `virtio_mmio.device=` items this file adds to the kernel command line — never both.
//
// Threads: built and shut down on the Vm's owning thread; the transports then serve vCPU
// threads (registers) and the event loop (queues).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/bus.h"
#include "kite/kite.h"
#include "storage/disk_image.h"
#include "virtio/block.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/device_registry.h"
#include "vmm/event_loop.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"

namespace kite {

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
};

// Opens the images and network backends of config->disks, ->nets and the entropy device, and
// registers each behind its transport (ids "vda".. or DiskConfig::id, "net0".. or
// NetConfig::id, "rng0"). An error names the device ("disk vda (disk.qcow2): ...").
Result<void> AddVirtioDevices(const VirtioWiring& wiring);

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

// query-block and query-blockstats.
std::vector<BlockInfo> QueryBlocks(const DeviceRegistry& registry);
std::vector<BlockStats> QueryBlockStats(const DeviceRegistry& registry);
// The disks' image files and identities, for snapshots: {"<id>": {"path", "format", "size",
// "mtime_ns"}}; and the check that they are unchanged at restore.
nlohmann::json DiskIdentities(const DeviceRegistry& registry);

}  // namespace kite
