// One vCPU thread: KVM_RUN in a loop, port I/O and MMIO to the buses (vcpu_exit.h), emulation
// fallbacks (emulation_fallbacks.h), and everything that ends the VM reported through
// VcpuEnv::end_vm with a reason, RIP and instruction bytes.
//
// Stopping: the VM sets the shared stop flag, then Kick() sets kvm_run.immediate_exit and sends
// SIGUSR1 (a no-op handler installed without SA_RESTART) so that a KVM_RUN in progress returns
// with EINTR; the loop sees the flag and the thread ends.
#pragma once

#include <atomic>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kite/kite.h"
#include "vmm/exit_stats.h"
#include "vmm/kvm.h"
#include "vmm/vcpu_exit.h"

namespace kite {

struct VcpuEnv {
  Buses buses;
  const GuestMemory* memory = nullptr;
  const std::atomic<bool>* stop = nullptr;
  std::function<void(VmOutcome)> end_vm;  // thread-safe; the first call wins
  bool count_stats = false;
};

class Vcpu {
 public:
  Vcpu(VcpuFd fd, VcpuEnv env) : fd_(std::move(fd)), env_(std::move(env)) {}
  ~Vcpu();

  VcpuFd& fd() { return fd_; }
  void Start();
  // Makes a running KVM_RUN return; the thread ends once the stop flag is set.
  void Kick();
  void Join();
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
  ExitStats stats_;
};

// Installs the no-op SIGUSR1 handler (once per process).
void InstallVcpuKickHandler();

}  // namespace kite
