// The vCPU thread loop. See vcpu.h.
#include "vmm/vcpu.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <mutex>

#include "base/log.h"
#include "base/seccomp.h"
#include "base/units.h"
#include "vmm/emulation_fallbacks.h"
#include "vmm/host_resources.h"

namespace kite {
namespace {

constexpr int kKickSignal = SIGUSR1;
constexpr size_t kMaxInsnBytes = 15;

void NoOpHandler(int) {}

}  // namespace

void InstallVcpuKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = NoOpHandler;
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(kKickSignal, &sa, nullptr);
  });
}

Vcpu::~Vcpu() {
  if (thread_.joinable()) {
    Kick();
    Join();
  }
}

void Vcpu::Start() {
  InstallVcpuKickHandler();
  thread_ = std::thread([this] { Loop(); });
}

void Vcpu::Kick() {
  fd_.RequestImmediateExit();
  if (thread_.joinable()) pthread_kill(thread_.native_handle(), kKickSignal);
}

void Vcpu::Join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuControl::Set(Want want) {
  {
    std::lock_guard lock(mutex_);
    want_.store(want);
  }
  changed_.notify_all();
}

void VcpuControl::WaitParked(uint32_t count) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return parked_ >= count || want_.load() != Want::kPause; });
}

void VcpuControl::Park() {
  std::unique_lock lock(mutex_);
  ++parked_;
  changed_.notify_all();
  changed_.wait(lock, [&] { return want_.load() != Want::kPause; });
  --parked_;
}

void VcpuControl::Exited() {
  {
    std::lock_guard lock(mutex_);
    ++parked_;
  }
  changed_.notify_all();
}

void Vcpu::Loop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kKickSignal);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  std::string name = "kite-vcpu" + std::to_string(fd_.index());
  pthread_setname_np(pthread_self(), name.c_str());
  // Before the filter, which does not allow it.
  Result<void> pinned = env_.affinity.empty() ? Result<void>() : PinThisThread(env_.affinity);
  seccomp::Confine(seccomp::ThreadKind::kVcpu);
  if (!pinned) {
    env_.end_vm(
        {VmEnd::kError, "vCPU " + std::to_string(fd_.index()) + ": " + pinned.error().message()});
    env_.control->Exited();
    return;
  }
  thread_id_.store(static_cast<int64_t>(::gettid()));

  VcpuControl& control = *env_.control;
  bool access_pending = false;  // the last KVM_RUN returned an exit we handled
  for (;;) {
    VcpuControl::Want want = control.want();
    if (want == VcpuControl::Want::kPause) {
      // Let KVM finish the access we handled (no guest instruction runs with immediate_exit).
      if (access_pending) {
        fd_.RequestImmediateExit();
        (void)fd_.Run();
        access_pending = false;
      }
      control.Park();
      // Cleared before the wanted state is read again: a Pause() after this point sets
      // immediate_exit anew after changing the wanted state, so no kick is lost.
      fd_.ClearImmediateExit();
      continue;
    }
    if (want == VcpuControl::Want::kExit) break;
    Result<bool> ran = fd_.Run();
    if (!ran) {
      env_.end_vm({VmEnd::kError, ran.error().message()});
      break;
    }
    access_pending = *ran;
    if (!*ran) continue;  // a signal or immediate_exit: look at the wanted state
    VcpuExit exit = DispatchExit(fd_.run_area(), env_.buses);
    if (env_.count_stats) stats_.Count(exit);
    if (IsHandledIo(exit)) continue;
    if (!HandleExit(exit)) break;
  }
  control.Exited();
}

bool Vcpu::HandleExit(const VcpuExit& exit) {
  if (std::holds_alternative<exit::Interrupted>(exit)) return true;
  if (const auto* error = std::get_if<exit::InternalError>(&exit)) {
    return HandleInternalError(*error);
  }
  if (const auto* event = std::get_if<exit::SystemEvent>(&exit)) {
    switch (event->type) {
      case KVM_SYSTEM_EVENT_SHUTDOWN:
        env_.end_vm({VmEnd::kPowerOff, "the guest powered off"});
        return false;
      case KVM_SYSTEM_EVENT_RESET:
        env_.end_vm({VmEnd::kReset, "the guest reset"});
        return false;
      default:
        break;
    }
  }
  // Shutdown (triple fault), HLT without an irqchip wake-up, failed entry, unknown exits and
  // other system events: the guest cannot continue.
  env_.end_vm({VmEnd::kCrash, CrashReport(DescribeExit(exit), {})});
  return false;
}

bool Vcpu::HandleInternalError(const exit::InternalError& error) {
  std::vector<uint8_t> insn = error.insn;
  if (insn.empty() && error.suberror == KVM_INTERNAL_ERROR_EMULATION) {
    insn = ReadInstructionAtRip();
  }
  if (error.suberror == KVM_INTERNAL_ERROR_EMULATION) {
    if (const EmulationFallback* f = MatchFallback(insn)) {
      if (auto applied = ApplyFallback(fd_, f->action); !applied) {
        env_.end_vm({VmEnd::kError, "applying the " + std::string(f->name) +
                                        " fallback: " + applied.error().message()});
        return false;
      }
      stats_.CountFallback();
      KITE_LOG_RATELIMITED(Debug, "vCPU %u: emulated %s in the VMM", fd_.index(), f->name);
      return true;
    }
  }
  env_.end_vm({VmEnd::kCrash, CrashReport(DescribeExit(error), insn)});
  return false;
}

std::vector<uint8_t> Vcpu::ReadInstructionAtRip() {
  auto regs = fd_.GetRegs();
  auto sregs = fd_.GetSregs();
  if (!regs || !sregs) return {};
  auto phys = fd_.Translate(sregs->cs.base + regs->rip);
  if (!phys) return {};
  // Stop at the page end: the next page may not be contiguous in guest-physical memory.
  size_t len = std::min<uint64_t>(kMaxInsnBytes, 4096 - (*phys & 4095));
  std::vector<uint8_t> bytes(len);
  if (!env_.memory->Read(GuestAddr(*phys), bytes.data(), len)) return {};
  return bytes;
}

std::string Vcpu::CrashReport(const std::string& what, std::span<const uint8_t> insn) {
  std::string report = "vCPU " + std::to_string(fd_.index()) + ": " + what;
  auto regs = fd_.GetRegs();
  auto sregs = fd_.GetSregs();
  if (regs && sregs) {
    report += "; RIP 0x" + ToHex(regs->rip) + " (CS 0x" + ToHex(sregs->cs.selector) + " base 0x" +
              ToHex(sregs->cs.base) + ", CR0 0x" + ToHex(sregs->cr0) + ", EFER 0x" +
              ToHex(sregs->efer) + "), RSP 0x" + ToHex(regs->rsp);
  }
  std::vector<uint8_t> read;
  if (insn.empty()) {
    read = ReadInstructionAtRip();
    insn = read;
  }
  if (!insn.empty() && what.find("instruction bytes") == std::string::npos) {
    report += ", instruction bytes: " + FormatBytes(insn);
  }
  return report;
}

}  // namespace kite
