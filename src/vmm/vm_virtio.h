// The VM's virtio-mmio devices: built from VmConfig (disks, then network interfaces, then the
// entropy device), each behind a virtio-mmio transport on the MMIO bus, with
//   * one window of layout::kVirtioMmioSize at layout::kVirtioMmioBase + n * size (slot n),
//   * one interrupt line (GSI kVirtioGsis[n]) fed through an irqfd: no exit to raise it,
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
#include "vmm/acpi/acpi_tables.h"
#include "vmm/event_loop.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"

namespace kite {

// Interrupt lines for virtio slots, in slot order: the IOAPIC pins no legacy device uses
// (0 timer, 1 keyboard, 2 cascade, 3/4 serial, 8 RTC, 9 GED, ...).
inline constexpr uint32_t kVirtioGsis[] = {5,  6,  7,  10, 11, 12, 13, 14, 15,
                                           16, 17, 18, 19, 20, 21, 22, 23};
static_assert(std::size(kVirtioGsis) >= kMaxVirtioDevices);

struct VirtioWiring {
  const VmConfig* config = nullptr;
  VmFd* vm = nullptr;
  Bus* mmio = nullptr;
  const GuestMemory* memory = nullptr;
  EventLoop* loop = nullptr;
};

class VirtioDevices {
 public:
  // Opens images and network backends, creates the devices and wires them. An error names
  // the device ("disk 2 (disk.qcow2): ...").
  static Result<std::unique_ptr<VirtioDevices>> Create(const VirtioWiring& wiring);
  ~VirtioDevices();  // Shutdown()

  // For the DSDT.
  std::vector<acpi::VirtioMmioDevice> AcpiDevices() const;
  // " virtio_mmio.device=4K@0xd0000000:5 ..." for --no-acpi (empty without devices).
  std::string KernelCmdline() const;
  // Resets every device (waits for in-flight I/O), releases eventfds and takes the devices
  // off the MMIO bus, so that nothing bound to the event loop outlives this object. Call after
  // the vCPUs stopped and before the event loop stops. Idempotent.
  void Shutdown();
  // One line per device: counters of the device and its transport (--stats).
  std::string StatsReport() const;

  struct Slot;  // vm_virtio.cc

 private:
  VirtioDevices() = default;
  std::vector<std::unique_ptr<Slot>> slots_;
  Bus* mmio_ = nullptr;
  bool shut_down_ = false;
};

}  // namespace kite
