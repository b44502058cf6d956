// One vCPU thread: KVM_RUN in a loop, port I/O and MMIO to the buses (vcpu_exit.h), emulation
// fallbacks (emulation_fallbacks.h), and everything that ends the VM reported through
// VcpuEnv::end_vm with a reason, RIP and instruction bytes.
//
// Run states (VcpuControl, shared by all vCPUs of a VM): Running → Paused → Running, and
// Exiting. The VM changes the wanted state, then Kick() sets kvm_run.immediate_exit and sends
// SIGUSR1 (a no-op handler installed without SA_RESTART) so that a KVM_RUN in progress returns
// with EINTR; the loop sees the wanted state and parks or ends. A vCPU parks only after a
// KVM_RUN with immediate_exit set has completed the port or MMIO access it last handed to
// userspace, so the registers a snapshot reads are consistent (KVM API: "complete pending
// operations without allowing any further instructions to be executed").
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kite/kite.h"
#include "vmm/exit_stats.h"
#include "vmm/kvm.h"
#include "vmm/vcpu_exit.h"

namespace kite {

// What every vCPU of a VM should be doing, and how many are parked. Thread-safe.
class VcpuControl {
 public:
  enum class Want { kRun, kPause, kExit };

  Want want() const { return want_.load(); }
  // Sets the wanted state and wakes parked vCPUs (the caller kicks running ones).
  void Set(Want want);
  // Waits until `count` vCPUs are parked or gone (exited threads count as gone).
  void WaitParked(uint32_t count);

  // vCPU side: parks while the wanted state is kPause.
  void Park();
  // vCPU side: the thread ended.
  void Exited();

 private:
  std::atomic<Want> want_{Want::kPause};
  std::mutex mutex_;
  std::condition_variable changed_;
  uint32_t parked_ = 0;  // guarded by mutex_ (parked + exited vCPUs)
};

struct VcpuEnv {
  Buses buses;
  const GuestMemory* memory = nullptr;
  VcpuControl* control = nullptr;
  std::function<void(VmOutcome)> end_vm;  // thread-safe; the first call wins
  bool count_stats = false;
  std::vector<uint32_t> affinity;  // host CPUs for the vCPU thread; empty: as inherited
};

class Vcpu {
 public:
  Vcpu(VcpuFd fd, VcpuEnv env) : fd_(std::move(fd)), env_(std::move(env)) {}
  ~Vcpu();

  VcpuFd& fd() { return fd_; }
  // Starts the thread; it runs or parks as VcpuControl says.
  void Start();
  // Makes a running KVM_RUN return, so that the thread looks at VcpuControl again.
  void Kick();
  void Join();
  // The host thread id (gettid) once the thread runs; 0 before.
  int64_t thread_id() const { return thread_id_.load(); }
  // Valid after Join().
  const ExitStats& stats() const { return stats_; }

 private:
  void Loop();
  // Handles an exit the buses did not; false when the VM must end.
  bool HandleExit(const VcpuExit& exit);
  bool HandleInternalError(const exit::InternalError& error);
  // "vCPU 0: <what>; RIP 0x..., instruction bytes: .."
  std::string CrashReport(const std::string& what, std::span<const uint8_t> insn);
  std::vector<uint8_t> ReadInstructionAtRip();

  VcpuFd fd_;
  VcpuEnv env_;
  std::thread thread_;
  std::atomic<int64_t> thread_id_{0};
  ExitStats stats_;
};

// Installs the no-op SIGUSR1 handler (once per process).
void InstallVcpuKickHandler();

}  // namespace kite
