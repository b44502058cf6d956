// Machine::Impl: what a kite::Machine holds (include/kite/kite.h) — the configuration, the
// current Vm (replaced on a restart), the run state, the event subscribers — shared by
// machine.cc (lifecycle, queries, events) and machine_snapshot.cc (save and restore).
//
// Locks: `control` serialises the calls that change the VM (Pause, Resume, Reset, PowerButton,
// SaveSnapshot, a restart in Wait, every change of a disk's image — also from a block job's
// thread); `mutex` guards the fields below for short reads (state(),
// the queries), so a query never waits behind a snapshot; `events_mutex` guards the
// subscribers. Order: control → mutex; events_mutex is taken alone (Emit is called without
// `mutex` held).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "kite/kite.h"
#include "vmm/block_jobs.h"
#include "vmm/vm.h"

namespace kite {

struct Machine::Impl {
  VmConfig config;  // as given, with host quirks applied to the cmdline by Start()
  bool quirks_applied = false;
  std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();

  std::mutex control;
  mutable std::mutex mutex;
  std::unique_ptr<Vm> vm;  // guarded by mutex (replaced on restart)
  RunState state = RunState::kPrelaunch;
  bool stop_requested = false;
  bool host_reset = false;     // system_reset, not the guest, reset it
  bool shutdown_sent = false;  // Quit() sent SHUTDOWN already (EmitEnd does not repeat it)

  std::mutex events_mutex;
  std::map<uint64_t, EventFn> subscribers;
  uint64_t next_token = 1;

  // Block jobs (machine_disks.cc). Declared after `vm`: destroyed (threads joined) first.
  std::unique_ptr<kite::BlockJobs> jobs;

  // Builds, boots and starts a new Vm in place of the old one; running unless `paused`.
  Result<void> Boot(bool paused);
  // Installs a built and started Vm; runs it unless `paused` (then in `paused_state`).
  Result<void> Install(std::unique_ptr<Vm> fresh, bool paused, RunState paused_state);
  void SetState(RunState state);
  Vm* CurrentVm() const;
  void Emit(const std::string& name, nlohmann::json data = nullptr);
  // The SHUTDOWN or RESET event for how a run ended.
  void EmitEnd(const VmOutcome& outcome, bool restarting);

  // --- live disks (machine_disks.cc) ---
  void MakeJobs();
  int DiskIndex(const std::string& device) const;  // in config.disks; -1: none
  // LiveDisk::Reconfigure with `control` held by the caller; config follows the new image.
  Result<void> ReconfigureDiskLocked(const std::string& device,
                                     const virtio::BlockDevice::ImageChange& change);
  Result<storage::OpenOptions> DiskOpenOptions(const std::string& device) const;
  // The disk's image, refused when a job works on it or it is read-only. `control` held.
  Result<std::shared_ptr<storage::DiskImage>> WritableDisk(const std::string& device);
};

// Host quirks for the configuration's command line; returns what to tell the user.
std::string ApplyHostQuirks(VmConfig& config);

}  // namespace kite
