// kite::Machine, the embedding API (include/kite/kite.h): a Vm plus the restart policy and the
// host-quirk command line adjustments.
#include <chrono>
#include <cstdio>
#include <mutex>

#include "kite/kite.h"
#include "vmm/host_quirks.h"
#include "vmm/vm.h"

namespace kite {

struct Machine::Impl {
  VmConfig config;  // as given, with host quirks applied to the cmdline by Start()
  bool quirks_applied = false;
  std::mutex mutex;
  std::unique_ptr<Vm> vm;  // guarded by mutex (replaced on restart)
  bool stop_requested = false;
  std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();

  // Creates and starts a new Vm in place of the old one.
  Result<void> Boot() {
    std::unique_ptr<Vm> old;
    {
      std::lock_guard lock(mutex);
      old = std::move(vm);
    }
    old.reset();  // stop and free the previous VM before mapping new guest memory
    std::unique_ptr<Vm> fresh = TRY(Vm::Create(config, created));
    TRY(fresh->Start());
    std::lock_guard lock(mutex);
    vm = std::move(fresh);
    if (stop_requested) vm->RequestEnd({VmEnd::kStopped, "stopped by request"});
    return {};
  }
};

Machine::Machine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Machine::~Machine() = default;

Result<std::unique_ptr<Machine>> Machine::Create(const VmConfig& config) {
  TRY(ValidateVmConfig(config));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  return std::unique_ptr<Machine>(new Machine(std::move(impl)));
}

Result<void> Machine::Start() {
  std::string quirks_message;
  if (impl_->config.host_quirks && !impl_->quirks_applied) {
    impl_->quirks_applied = true;
    HostQuirks quirks = DetectHostQuirksFromProc();
    if (quirks.emulated_kvm) {
      std::vector<std::string> added =
          AppendCmdlineItems(impl_->config.cmdline, EmulatedHostCmdlineItems());
      for (const auto& item : added) quirks_message += " " + item;
      if (!added.empty()) {
        quirks_message = "kite: " + quirks.reason +
                         "; added to the kernel command line:" + quirks_message +
                         " (--no-host-quirks to turn off)\n";
      }
    }
  }
  TRY(impl_->Boot());
  // Said once the VM runs, so that a setup error stays the only message when there is one.
  std::fputs(quirks_message.c_str(), stderr);
  return {};
}

VmOutcome Machine::Wait() {
  for (;;) {
    Vm* vm;
    {
      std::lock_guard lock(impl_->mutex);
      vm = impl_->vm.get();
    }
    if (vm == nullptr) return {VmEnd::kError, "the machine was not started"};
    VmOutcome outcome = vm->Wait();
    if (impl_->config.stats) std::fprintf(stderr, "%s", vm->StatsReport().c_str());
    bool restart = outcome.end == VmEnd::kReset && impl_->config.on_reboot == OnReboot::kRestart;
    {
      std::lock_guard lock(impl_->mutex);
      restart = restart && !impl_->stop_requested;
      // A stop request ends this run only: a later Start() boots again.
      if (!restart) impl_->stop_requested = false;
    }
    if (!restart) return outcome;
    std::fprintf(stderr, "kite: the guest reset; restarting the VM\n");
    if (auto booted = impl_->Boot(); !booted) {
      return {VmEnd::kError, "restarting the VM: " + booted.error().message()};
    }
  }
}

void Machine::RequestStop() {
  std::lock_guard lock(impl_->mutex);
  impl_->stop_requested = true;
  if (impl_->vm) impl_->vm->RequestEnd({VmEnd::kStopped, "stopped by request"});
}

VmOutcome RunVm(const VmConfig& config) {
  auto machine = Machine::Create(config);
  if (!machine) return {VmEnd::kError, machine.error().message()};
  if (auto started = (*machine)->Start(); !started) {
    return {VmEnd::kError, started.error().message()};
  }
  return (*machine)->Wait();
}

}  // namespace kite
