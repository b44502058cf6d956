// Vm: one virtual machine; owns everything (KVM fds, guest memory, buses, the device registry,
// vCPU threads). Its life, in the order of docs/ARCHITECTURE.md "Boot sequence":
//
//   Build()    KVM VM → TSS/identity map → irqchip + PIT → guest memory slots → devices on the
//              buses, in the registry → vCPUs (CPUID, MSRs, FPU, LAPIC). Nothing guest-visible
//              is loaded: the same machine serves a boot and a restore.
//   Boot()     platform tables (ACPI, or MP table with acpi = false) → kernel, initrd, command
//              line → boot state on vCPU 0, wait-for-SIPI on the others.
//   or Restore(state)  device state → VM state (PIT, clock, irqchips) → vCPU state.
//   Start()    the event loop, the console and the vCPU threads, parked.
//   Resume() / Pause()  vCPUs run / are parked with the guest clock held.
//   RequestEnd() → Wait() → teardown.
//
// Threads: the owning thread builds, boots or restores, starts and waits. Pause, Resume,
// SaveState, PowerButton and the queries may come from any one control thread at a time (the
// Machine serialises them); RequestEnd from anyone (the first outcome wins).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "kite/kite.h"
#include "vmm/device_registry.h"
#include "vmm/event_loop.h"
#include "vmm/guest_memory.h"
#include "vmm/host_resources.h"
#include "vmm/kvm.h"
#include "vmm/kvm_state.h"
#include "vmm/vcpu.h"
#include "vmm/vm_virtio.h"

namespace kite {

struct VmDevices;  // vm_devices.h
class VmPci;       // vm_pci.h

// The outcome detail of Ctrl-A x on the console (QMP SHUTDOWN reason "host-ui").
inline constexpr const char* kConsoleQuit = "quit from the console";

// Fresh guest RAM of config.memory bytes, backed as config.memory_backing says.
Result<GuestMemory> CreateGuestMemory(const VmConfig& config);

class Vm {
 public:
  // `config` is validated; its cmdline is used as given (host quirks are applied by the caller).
  // `start` is kite's start time (boot markers are reported relative to it). `placement`: the
  // host CPUs of each vCPU thread (PlaceThreads). `memory`: guest RAM to use (a snapshot's
  // memory file, mapped); by default fresh memory backed as config.memory_backing says.
  static Result<std::unique_ptr<Vm>> Build(const VmConfig& config,
                                           std::chrono::steady_clock::time_point start,
                                           const ThreadPlacement& placement,
                                           std::optional<GuestMemory> memory = std::nullopt);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Loads the platform tables and the kernel and sets the boot registers.
  Result<void> Boot();
  // Applies a snapshot's "vm", "vcpus" and "devices" (already checksummed by the caller; every
  // value is still checked). `clock_realtime`: advance kvmclock by the wall time since the
  // snapshot where the host can.
  Result<void> Restore(const nlohmann::json& state, bool clock_realtime);
  // Starts the threads with the vCPUs parked.
  Result<void> Start();
  // Parks every vCPU (returns once all are out of KVM_RUN), holds the guest clock.
  Result<void> Pause();
  // Puts the clock back and lets the vCPUs run (also the first run after Start()).
  Result<void> Resume();
  // With the VM paused: quiesces the devices, returns {"vm", "vcpus", "devices"} and resumes
  // the devices (the vCPUs stay parked).
  Result<nlohmann::json> SaveState();
  // The ACPI power button (GED event). DeviceNotActive without ACPI.
  Result<void> PowerButton();

  // --- Hotplug: --transport pci (ACPI PCI hotplug through the GED, docs/PCI.md "Hotplug");
  // driven by the Machine (machine_hotplug.cc) on its control thread, with the registry's
  // readers locked out around AddDevice and DetachDevice. ---
  // Called on a vCPU thread with the slot the guest ejected (its _EJ0): must not block.
  using SlotEjectFn = std::function<void(uint32_t slot)>;
  void SetSlotEjectHandler(SlotEjectFn fn);
  // Builds the disk or NIC of `request` as device `id` in PCI slot request.slot (0: the lowest
  // free), registers it and tells the guest (Device Check). Returns the slot. On error nothing
  // is left on the bus.
  Result<uint32_t> AddDevice(const DeviceAddRequest& request, const std::string& id);
  // Asks the guest to release device `id` (Eject Request); returns its slot.
  Result<uint32_t> RequestUnplug(const std::string& id);
  // Takes the device in `slot` out of the registry; nullptr when none is there.
  std::unique_ptr<DeviceEntry> DetachDevice(uint32_t slot);
  // Unplugs a detached device: I/O drained, off the bus, backend closed (UnplugVirtio).
  void ReleaseDevice(std::unique_ptr<DeviceEntry> entry);
  // Every virtio-pci device's slot by id.
  std::map<std::string, uint32_t> PciSlots() const;

  // Sets the outcome unless one is set already, and wakes Wait(). Thread-safe.
  void RequestEnd(VmOutcome outcome);
  // Blocks until an outcome is set, then stops everything and returns it.
  VmOutcome Wait();

  // Exit and device counters (--stats), valid after Wait().
  std::string StatsReport() const;
  nlohmann::json Counters() const;
  std::vector<CpuInfo> Cpus() const;
  const DeviceRegistry& registry() const { return registry_; }
  const GuestMemory& memory() const { return memory_; }
  virtio::ThrottleGroups& throttle_groups() { return throttle_groups_; }

 private:
  Vm(const VmConfig& config, KvmSystem kvm, VmFd vm, GuestMemory memory);
  Result<void> BuildPlatform(std::chrono::steady_clock::time_point start);
  Result<uint64_t> WritePlatformTables();
  Result<void> CreateVcpus();
  void KickAll();
  VirtioWiring Wiring();
  void OnSlotEjected(uint32_t slot);
  bool GedInterruptRouted() const;
  void Teardown();

  const VmConfig config_;
  KvmSystem kvm_;
  VmFd vm_;
  GuestMemory memory_;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
  std::vector<uint32_t> msr_indices_;  // the MSRs a snapshot saves
  HostKvm host_;                       // what this host's KVM offers for save/restore
  Bus pio_bus_{"pio"};
  Bus mmio_bus_{"mmio"};
  EventLoop loop_;              // outlives the devices bound to it (teardown shuts them down first)
  std::unique_ptr<VmPci> pci_;  // --transport pci; outlives the registry's virtio functions
  virtio::ThrottleGroups throttle_groups_;  // outlives the disks in the groups
  DeviceRegistry registry_;
  ResourceAllocator allocator_;
  std::unique_ptr<VmDevices> devices_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  ThreadPlacement placement_;
  VcpuControl control_;
  std::optional<kvm_clock_data> held_clock_;  // the guest clock while paused
  // The devices stay quiesced from a snapshot of the paused VM until Resume: a request the
  // snapshot saved as not yet taken (one a rate limit held back) must not reach the disks
  // while the VM stays paused, or the snapshot's disks no longer match its memory.
  bool devices_held_ = false;
  bool started_ = false;
  bool restored_ = false;
  bool torn_down_ = false;

  std::mutex eject_mutex_;
  SlotEjectFn on_slot_eject_;  // guarded by eject_mutex_

  std::mutex mutex_;
  std::condition_variable ended_;
  std::optional<VmOutcome> outcome_;  // guarded by mutex_
};

}  // namespace kite
