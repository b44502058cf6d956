// Vm: one running virtual machine; owns everything (KVM fds, guest memory, buses, devices,
// vCPU threads). Built in the order of docs/VMM.md "Boot sequence":
//   KVM VM → TSS/identity map → irqchip + PIT → guest memory slots → devices on the buses →
//   platform tables (ACPI, or MP table with acpi = false) → kernel, initrd, command line →
//   vCPUs (CPUID, MSRs, FPU, LAPIC; boot state on vCPU 0, wait-for-SIPI on the others).
//
// Threads: the creating thread calls Start() and Wait(); vCPU threads and devices call
// RequestEnd(); anyone may call RequestEnd() (thread-safe, the first outcome wins). Wait()
// stops and joins the vCPUs once an outcome is set.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "kite/kite.h"
#include "vmm/boot/loader.h"
#include "vmm/event_loop.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/vcpu.h"

namespace kite {

struct VmDevices;     // vm_devices.h
class VirtioDevices;  // vm_virtio.h

class Vm {
 public:
  // `config` is validated; its cmdline is used as given (host quirks are applied by the caller).
  // `start` is kite's start time (boot markers are reported relative to it).
  static Result<std::unique_ptr<Vm>> Create(const VmConfig& config,
                                            std::chrono::steady_clock::time_point start);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  Result<void> Start();
  // Sets the outcome unless one is set already, and wakes Wait(). Thread-safe.
  void RequestEnd(VmOutcome outcome);
  // Blocks until an outcome is set, then stops the vCPUs and returns it.
  VmOutcome Wait();
  // Exit and device counters (--stats), valid after Wait().
  std::string StatsReport() const;

  const GuestMemory& memory() const { return memory_; }

 private:
  Vm(const VmConfig& config, KvmSystem kvm, VmFd vm, GuestMemory memory);
  Result<void> SetupPlatform(std::chrono::steady_clock::time_point start);
  Result<uint64_t> WritePlatformTables();
  Result<void> CreateVcpus(const std::vector<kvm_cpuid_entry2>& supported_cpuid);
  void StopVcpus();

  const VmConfig config_;
  KvmSystem kvm_;
  VmFd vm_;
  GuestMemory memory_;
  Bus pio_bus_{"pio"};
  Bus mmio_bus_{"mmio"};
  std::unique_ptr<VmDevices> devices_;
  EventLoop loop_;                         // before virtio_: outlives the devices bound to it
  std::unique_ptr<VirtioDevices> virtio_;  // null-safe: built in SetupPlatform
  boot::BootPlan boot_plan_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::atomic<bool> stop_{false};
  bool started_ = false;
  bool stopped_ = false;

  std::mutex mutex_;
  std::condition_variable ended_;
  std::optional<VmOutcome> outcome_;  // guarded by mutex_
};

}  // namespace kite
