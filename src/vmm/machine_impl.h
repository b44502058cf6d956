// Machine::Impl: what a kite::Machine holds (include/kite/kite.h) — the configuration, the
// current Vm (replaced on a restart), the run state, the event subscribers — shared by
// machine.cc (lifecycle, queries, events) and machine_snapshot.cc (save and restore).
//
// Locks: `control` serialises the calls that change the VM (Pause, Resume, Reset, PowerButton,
// SaveSnapshot, a restart in Wait, every change of a disk's image — also from a block job's
// thread — and hotplug, also from the hotplug thread); `mutex` guards the fields below for
// short reads (state(), the queries) and the VM's device registry while hotplug changes it, so
// a query never waits behind a snapshot; `events_mutex` guards the subscribers;
// `hotplug_mutex` the hotplug thread's queue (a leaf: a vCPU thread takes it to report an
// eject). Order: control → mutex; events_mutex and hotplug_mutex are taken alone (Emit is
// called without `mutex` held).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kite/kite.h"
#include "vmm/block_jobs.h"
#include "vmm/vm.h"

namespace kite {

struct Machine::Impl {
  VmConfig config;  // as given, with host quirks applied to the cmdline by Start()
  bool quirks_applied = false;
  std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();
  ThreadPlacement placement;  // where the vCPU threads go (PlaceThreads, at creation)

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

  // --- hotplug (machine_hotplug.cc) ---
  // A device_del waiting for the guest, and until when.
  struct PendingUnplug {
    std::string id;
    std::chrono::steady_clock::time_point deadline;
  };
  // A slot the guest ejected (its _EJ0), reported on a vCPU thread.
  struct Ejected {
    const Vm* vm = nullptr;
    uint32_t slot = 0;
  };
  std::mutex hotplug_mutex;
  std::condition_variable hotplug_wake;
  std::vector<PendingUnplug> unplugs;  // guarded by hotplug_mutex
  std::vector<Ejected> ejected;        // guarded by hotplug_mutex
  bool hotplug_exit = false;           // guarded by hotplug_mutex
  std::thread hotplug_thread;          // finishes unplugs and times them out

  ~Impl();
  void StartHotplugThread();
  void HotplugThread();
  // On a vCPU thread: queue the eject for the hotplug thread.
  void OnSlotEjected(const Vm* vm, uint32_t slot);
  // The guest let go of `slot`: device out of the VM and the config, DEVICE_DELETED.
  void FinishUnplug(const Vm* vm, uint32_t slot);
  // After a boot or restore: every device's id and PCI slot written into `config`, so that a
  // reset or a snapshot rebuilds the same devices in the same places.
  void PinDevices();
  // The VM a hotplug command works on (running or paused); DeviceNotActive otherwise.
  // `cold`: also in prelaunch (device_add before the first cont is a cold plug: the guest finds
  // the device when it boots). device_del needs a running guest to let go.
  Result<Vm*> HotplugVm(const char* command, bool cold = false);
  // A pending device_del of `id`, if any.
  bool UnplugPending(const std::string& id);
  // At a guest reset (control held): the devices of pending device_dels leave the config, so
  // that the next run is built without them. Returns their ids.
  std::vector<std::string> DropPendingUnplugs();
  // Device `id` out of the config (disks, nets, rng, pci_slots). Under `mutex`.
  void ForgetDeviceLocked(const std::string& id);

  // Builds, boots and starts a new Vm in place of the old one; running unless `paused`.
  Result<void> Boot(bool paused);
  // Installs a built and started Vm; runs it unless `paused` (then in `paused_state`).
  Result<void> Install(std::unique_ptr<Vm> fresh, bool paused, RunState paused_state);
  void SetState(RunState state);
  Vm* CurrentVm() const;
  void Emit(const std::string& name, nlohmann::json data = nullptr);
  // The balloon's BALLOON_CHANGE events of a Vm about to run (machine_balloon.cc).
  void WatchBalloon(Vm& fresh);
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
