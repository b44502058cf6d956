// kite::Machine, the embedding API (include/kite/kite.h): a Vm plus the run state, the restart
// policy, the control-plane calls, the queries and the events. Snapshots are in
// machine_snapshot.cc; the fields and lock order in machine_impl.h.
#include <sys/time.h>

#include <chrono>
#include <cstdio>

#include "kite/kite.h"
#include "vmm/host_quirks.h"
#include "vmm/machine_impl.h"
#include "vmm/vm_virtio.h"

namespace kite {

std::string ApplyHostQuirks(VmConfig& config) {
  if (!config.host_quirks) return "";
  HostQuirks quirks = DetectHostQuirksFromProc();
  if (!quirks.emulated_kvm) return "";
  std::vector<std::string> added =
      AppendCmdlineItems(config.cmdline, EmulatedHostCmdlineItems(config.cpus));
  if (added.empty()) return "";
  std::string items;
  for (const auto& item : added) items += " " + item;
  return "kite: " + quirks.reason + "; added to the kernel command line:" + items +
         " (--no-host-quirks to turn off)\n";
}

Result<void> Machine::Impl::Boot(bool paused) {
  std::unique_ptr<Vm> old;
  {
    std::lock_guard lock(mutex);
    old = std::move(vm);
  }
  old.reset();  // stop and free the previous VM before mapping new guest memory
  std::unique_ptr<Vm> fresh = TRY(Vm::Build(config, created, placement));
  TRY(fresh->Boot());
  TRY(fresh->Start());
  return Install(std::move(fresh), paused, RunState::kPrelaunch);
}

Result<void> Machine::Impl::Install(std::unique_ptr<Vm> fresh, bool paused, RunState paused_state) {
  fresh->SetSlotEjectHandler(
      [this, from = fresh.get()](uint32_t slot) { OnSlotEjected(from, slot); });
  WatchBalloon(*fresh);
  if (!paused) TRY(fresh->Resume());
  {
    std::lock_guard lock(mutex);
    vm = std::move(fresh);
    state = paused ? paused_state : RunState::kRunning;
    if (stop_requested) vm->RequestEnd({VmEnd::kStopped, "stopped by request"});
  }
  PinDevices();
  return {};
}

void Machine::Impl::SetState(RunState s) {
  std::lock_guard lock(mutex);
  state = s;
}

Vm* Machine::Impl::CurrentVm() const {
  std::lock_guard lock(mutex);
  return vm.get();
}

void Machine::Impl::Emit(const std::string& name, nlohmann::json data) {
  timeval now{};
  Event event{name, std::move(data), -1, -1};
  if (gettimeofday(&now, nullptr) == 0) {
    event.seconds = now.tv_sec;
    event.microseconds = now.tv_usec;
  }
  std::lock_guard lock(events_mutex);
  for (const auto& [token, fn] : subscribers) fn(event);
}

// QEMU's ShutdownCause names (qapi/run-state.json).
void Machine::Impl::EmitEnd(const VmOutcome& outcome, bool restarting) {
  std::string reason;
  bool guest = true;
  {
    std::lock_guard lock(mutex);
    switch (outcome.end) {
      case VmEnd::kPowerOff:
        reason = "guest-shutdown";
        break;
      case VmEnd::kReset:
        reason = host_reset ? "host-qmp-system-reset" : "guest-reset";
        guest = !host_reset;
        break;
      case VmEnd::kCrash:
        reason = "guest-panic";
        break;
      case VmEnd::kError:
        reason = "host-error";
        guest = false;
        break;
      case VmEnd::kStopped:
        // Ctrl-A x is QEMU's "host-ui"; SIGINT/SIGTERM and RequestStop() "host-signal".
        reason = outcome.detail == kConsoleQuit ? "host-ui" : "host-signal";
        guest = false;
        break;
    }
    host_reset = false;
    if (shutdown_sent && !restarting) {  // Quit() announced it already
      shutdown_sent = false;
      return;
    }
    shutdown_sent = false;
  }
  Emit(restarting ? "RESET" : "SHUTDOWN", {{"guest", guest}, {"reason", reason}});
}

Machine::Machine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Machine::~Machine() = default;

Result<std::unique_ptr<Machine>> Machine::Create(const VmConfig& config) {
  TRY(ValidateVmConfig(config));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->placement = TRY(PlaceThreads(config));  // before the machine's threads start
  impl->MakeJobs();
  impl->StartHotplugThread();
  return std::unique_ptr<Machine>(new Machine(std::move(impl)));
}

Result<void> Machine::Start() {
  std::lock_guard control(impl_->control);
  std::string quirks_message;
  if (!impl_->quirks_applied) {
    impl_->quirks_applied = true;
    quirks_message = ApplyHostQuirks(impl_->config);
  }
  TRY(impl_->Boot(impl_->config.start_paused));
  // Said once the VM runs, so that a setup error stays the only message when there is one.
  std::fputs(quirks_message.c_str(), stderr);
  return {};
}

VmOutcome Machine::Wait() {
  for (;;) {
    Vm* vm = impl_->CurrentVm();
    if (vm == nullptr) return {VmEnd::kError, "the machine was not started"};
    VmOutcome outcome = vm->Wait();
    // Jobs end with the run (cancelled): their threads take the control lock to let go.
    impl_->jobs->CancelAll();
    std::unique_lock control(impl_->control);
    if (impl_->config.stats) std::fprintf(stderr, "%s", vm->StatsReport().c_str());
    bool restart = outcome.end == VmEnd::kReset && impl_->config.on_reboot == OnReboot::kRestart;
    {
      std::lock_guard lock(impl_->mutex);
      restart = restart && !impl_->stop_requested;
      // A stop request ends this run only: a later Start() boots again.
      if (!restart) impl_->stop_requested = false;
      impl_->state = restart                        ? RunState::kPrelaunch
                     : outcome.end == VmEnd::kError ? RunState::kInternalError
                     : outcome.end == VmEnd::kCrash ? RunState::kGuestPanicked
                                                    : RunState::kShutdown;
    }
    impl_->EmitEnd(outcome, restart);
    if (!restart) return outcome;
    std::fprintf(stderr, "kite: the guest reset; restarting the VM\n");
    // A device_del the guest did not answer before its reset: the new run starts without it.
    std::vector<std::string> unplugged = impl_->DropPendingUnplugs();
    if (auto booted = impl_->Boot(false); !booted) {
      impl_->SetState(RunState::kInternalError);
      return {VmEnd::kError, "restarting the VM: " + booted.error().message()};
    }
    for (const std::string& id : unplugged) {
      impl_->Emit("DEVICE_DELETED", {{"device", id}, {"path", "/machine/peripheral/" + id}});
    }
  }
}

void Machine::RequestStop() {
  std::lock_guard lock(impl_->mutex);
  impl_->stop_requested = true;
  if (impl_->vm) impl_->vm->RequestEnd({VmEnd::kStopped, "stopped by request"});
}

void Machine::Quit() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stop_requested = true;
    if (impl_->vm) impl_->vm->RequestEnd({VmEnd::kStopped, "quit by the control socket"});
    if (impl_->shutdown_sent || !impl_->vm) return;
    impl_->shutdown_sent = true;
  }
  // As QEMU: the SHUTDOWN event goes out before quit's reply.
  impl_->Emit("SHUTDOWN", {{"guest", false}, {"reason", "host-qmp-quit"}});
}

Result<void> Machine::Pause() {
  std::lock_guard control(impl_->control);
  RunState s = state();
  if (s == RunState::kPaused || s == RunState::kPrelaunch || s == RunState::kInMigrate) return {};
  if (s != RunState::kRunning) {
    return Err("the VM cannot be paused while it is " + std::string(RunStateName(s)));
  }
  TRY(impl_->CurrentVm()->Pause());
  impl_->SetState(RunState::kPaused);
  impl_->Emit("STOP");
  return {};
}

Result<void> Machine::Resume() {
  std::lock_guard control(impl_->control);
  RunState s = state();
  if (s == RunState::kRunning) return {};
  if (s != RunState::kPaused && s != RunState::kPrelaunch && s != RunState::kInMigrate) {
    return Err("the VM cannot be resumed while it is " + std::string(RunStateName(s)));
  }
  Vm* vm = impl_->CurrentVm();
  // prelaunch before Start(): nothing is built to run (found by qmp_fuzzer).
  if (vm == nullptr) return Err("the VM cannot be resumed: the machine was not started");
  TRY(vm->Resume());
  // The first run after a restore: the NICs announce where they are now, as QEMU does after
  // an incoming migration.
  if (s == RunState::kInMigrate) (void)AnnounceNets(vm->registry(), AnnounceRequest{});
  impl_->SetState(RunState::kRunning);
  impl_->Emit("RESUME");
  return {};
}

Result<void> Machine::PowerButton() {
  std::lock_guard control(impl_->control);
  Vm* vm = impl_->CurrentVm();
  if (vm == nullptr) return Err(ErrorKind::kDeviceNotActive, "the VM is not running");
  TRY(vm->PowerButton());
  impl_->Emit("POWERDOWN");
  return {};
}

Result<void> Machine::Reset() {
  std::lock_guard control(impl_->control);
  std::lock_guard lock(impl_->mutex);
  if (!impl_->vm) return Err("the VM is not running");
  impl_->host_reset = true;
  impl_->vm->RequestEnd({VmEnd::kReset, "reset by the control socket"});
  return {};
}

RunState Machine::state() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->state;
}

const VmConfig& Machine::config() const {
  return impl_->config;
}

std::vector<CpuInfo> Machine::Cpus() const {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->vm) {
    std::vector<CpuInfo> out;
    for (uint32_t i = 0; i < impl_->config.cpus; ++i) out.push_back({i, 0});
    return out;
  }
  return impl_->vm->Cpus();
}

std::vector<BlockInfo> Machine::Blocks() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->vm ? QueryBlocks(impl_->vm->registry()) : std::vector<BlockInfo>{};
}

std::vector<BlockStats> Machine::BlockStatistics() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->vm ? QueryBlockStats(impl_->vm->registry()) : std::vector<BlockStats>{};
}

std::vector<NetThrottleInfo> Machine::NetThrottles() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->vm ? QueryNetThrottles(impl_->vm->registry()) : std::vector<NetThrottleInfo>{};
}

nlohmann::json Machine::Counters() const {
  std::lock_guard lock(impl_->mutex);
  nlohmann::json out = impl_->vm ? impl_->vm->Counters() : nlohmann::json::object();
  out["status"] = RunStateName(impl_->state);
  return out;
}

uint64_t Machine::Subscribe(EventFn fn) {
  std::lock_guard lock(impl_->events_mutex);
  uint64_t token = impl_->next_token++;
  impl_->subscribers.emplace(token, std::move(fn));
  return token;
}

void Machine::Unsubscribe(uint64_t token) {
  std::lock_guard lock(impl_->events_mutex);
  impl_->subscribers.erase(token);
}

const char* RunStateName(RunState state) {
  switch (state) {
    case RunState::kPrelaunch:
      return "prelaunch";
    case RunState::kRunning:
      return "running";
    case RunState::kPaused:
      return "paused";
    case RunState::kSaveVm:
      return "save-vm";
    case RunState::kRestoreVm:
      return "restore-vm";
    case RunState::kInMigrate:
      return "inmigrate";
    case RunState::kShutdown:
      return "shutdown";
    case RunState::kInternalError:
      return "internal-error";
    case RunState::kGuestPanicked:
      return "guest-panicked";
  }
  return "?";
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
