// Machine::AddDevice and Machine::RemoveDevice (QMP device_add / device_del): ACPI PCI hotplug
// on a --transport pci machine (docs/PCI.md "Hotplug", docs/CONTROL.md "Hotplug").
//
//   add:    checked against the config as it would be (ids, MAC, limits, the disk's settings)
//           → built on the bus in a free slot (image opened and locked, backend up) → into the
//           registry → GED Device Check on the slot: Linux's acpiphp scans it and binds
//           virtio-pci by itself → the config gains the device (a reset or a snapshot keeps it).
//   remove: GED Eject Request on the slot → returns. The guest's acpiphp unbinds the driver
//           (virtio-blk waits for its requests) and runs the slot's _EJ0, which writes the slot
//           to the GED on a vCPU thread → queued here → the hotplug thread takes the device
//           out of the registry, drains and resets it, empties the slot, closes the backend on
//           the event loop, drops it from the config → DEVICE_DELETED.
//           No _EJ0 within unplug_timeout_ms → DEVICE_UNPLUG_GUEST_ERROR; the device stays and
//           works (a later _EJ0 still removes it).
#include <pthread.h>

#include <algorithm>
#include <cstdio>

#include "base/seccomp.h"
#include "kite/kite.h"
#include "vmm/balloon_options.h"
#include "vmm/device_options.h"
#include "vmm/machine_impl.h"
#include "vmm/vm_virtio.h"

namespace kite {
namespace {

std::string DevicePath(const std::string& id) {
  return "/machine/peripheral/" + id;
}

}  // namespace

Machine::Impl::~Impl() {
  {
    std::lock_guard lock(hotplug_mutex);
    hotplug_exit = true;
  }
  hotplug_wake.notify_all();
  if (hotplug_thread.joinable()) hotplug_thread.join();
}

void Machine::Impl::StartHotplugThread() {
  hotplug_thread = std::thread([this] { HotplugThread(); });
}

void Machine::Impl::OnSlotEjected(const Vm* from, uint32_t slot) {
  {
    std::lock_guard lock(hotplug_mutex);
    ejected.push_back({from, slot});
  }
  hotplug_wake.notify_all();
}

void Machine::Impl::HotplugThread() {
  pthread_setname_np(pthread_self(), "kite-hotplug");
  seccomp::Confine(seccomp::ThreadKind::kHotplug);
  std::unique_lock lock(hotplug_mutex);
  while (!hotplug_exit) {
    if (!ejected.empty()) {
      Ejected e = ejected.front();
      ejected.erase(ejected.begin());
      lock.unlock();
      FinishUnplug(e.vm, e.slot);
      lock.lock();
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    auto late = std::find_if(unplugs.begin(), unplugs.end(),
                             [&](const PendingUnplug& u) { return u.deadline <= now; });
    if (late != unplugs.end()) {
      std::string id = late->id;
      unplugs.erase(late);
      lock.unlock();
      std::fprintf(stderr, "kite: device_del %s: the guest did not release it; it stays\n",
                   id.c_str());
      Emit("DEVICE_UNPLUG_GUEST_ERROR", {{"device", id}, {"path", DevicePath(id)}});
      lock.lock();
      continue;
    }
    if (unplugs.empty()) {
      hotplug_wake.wait(lock);
    } else {
      auto next = std::min_element(
          unplugs.begin(), unplugs.end(),
          [](const PendingUnplug& a, const PendingUnplug& b) { return a.deadline < b.deadline; });
      hotplug_wake.wait_until(lock, next->deadline);
    }
  }
}

void Machine::Impl::FinishUnplug(const Vm* from, uint32_t slot) {
  std::lock_guard control_lock(control);
  Vm* current = CurrentVm();
  if (current == nullptr || current != from) return;  // an eject from a VM since replaced
  std::unique_ptr<DeviceEntry> entry;
  {
    std::lock_guard lock(mutex);
    entry = current->DetachDevice(slot);
  }
  if (!entry) {
    std::fprintf(stderr, "kite: the guest ejected PCI slot %u, which is empty\n", slot);
    return;
  }
  const std::string id = entry->id;
  std::fprintf(stderr, "kite: device_del %s: released by the guest (PCI slot %u)\n", id.c_str(),
               slot);
  {
    std::lock_guard lock(hotplug_mutex);
    std::erase_if(unplugs, [&](const PendingUnplug& u) { return u.id == id; });
  }
  current->ReleaseDevice(std::move(entry));
  {
    std::lock_guard lock(mutex);
    ForgetDeviceLocked(id);
  }
  Emit("DEVICE_DELETED", {{"device", id}, {"path", DevicePath(id)}});
}

void Machine::Impl::ForgetDeviceLocked(const std::string& id) {
  for (size_t i = 0; i < config.disks.size(); ++i) {
    if (cli::DiskId(config, i) == id) {
      config.disks.erase(config.disks.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  for (size_t i = 0; i < config.nets.size(); ++i) {
    if (cli::NetId(config, i) == id) {
      config.nets.erase(config.nets.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  if (id == "rng0") config.rng = false;
  if (id == "vsock0") config.vsock.reset();
  if (config.balloon && cli::BalloonId(*config.balloon) == id) config.balloon.reset();
  config.pci_slots.erase(id);
}

std::vector<std::string> Machine::Impl::DropPendingUnplugs() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(hotplug_mutex);
    for (const PendingUnplug& u : unplugs) ids.push_back(u.id);
    unplugs.clear();
  }
  std::lock_guard lock(mutex);
  for (const std::string& id : ids) ForgetDeviceLocked(id);
  return ids;
}

void Machine::Impl::PinDevices() {
  std::lock_guard lock(mutex);
  if (!vm) return;
  for (size_t i = 0; i < config.disks.size(); ++i) config.disks[i].id = cli::DiskId(config, i);
  for (size_t i = 0; i < config.nets.size(); ++i) config.nets[i].id = cli::NetId(config, i);
  if (config.transport == VirtioTransportKind::kPci) config.pci_slots = vm->PciSlots();
}

Result<Vm*> Machine::Impl::HotplugVm(const char* command, bool cold) {
  std::lock_guard lock(mutex);
  bool live = state == RunState::kRunning || state == RunState::kPaused;
  if (!vm || !(live || (cold && state == RunState::kPrelaunch))) {
    return Err(
        ErrorKind::kDeviceNotActive,
        std::string(command) + ": the VM is not running (it is " + RunStateName(state) + ")");
  }
  return vm.get();
}

bool Machine::Impl::UnplugPending(const std::string& id) {
  std::lock_guard lock(hotplug_mutex);
  return std::any_of(unplugs.begin(), unplugs.end(),
                     [&](const PendingUnplug& u) { return u.id == id; });
}

Result<void> Machine::AddDevice(const DeviceAddRequest& request) {
  std::lock_guard control(impl_->control);
  Vm* vm = TRY(impl_->HotplugVm("device_add", /*cold=*/true));
  VmConfig next = impl_->config;
  std::string id;
  if (request.driver == HotplugDriver::kVirtioBlk) {
    id = request.disk.id;
    next.disks.push_back(request.disk);
  } else {
    id = request.net.id;
    next.nets.push_back(request.net);
  }
  if (id.empty()) return Err("device_add: an id is needed (\"id\": \"disk1\")");
  if (request.slot != 0) next.pci_slots[id] = request.slot;
  // The VM as it would be: ids unique and well formed, one MAC per NIC, the disk's or NIC's
  // settings, the device limit, the slot.
  TRY_CTX(ValidateVmConfig(next), "device_add " + id);
  uint32_t slot = 0;
  {
    std::lock_guard lock(impl_->mutex);
    slot = TRY_CTX(vm->AddDevice(request, id), "device_add " + id);
    next.pci_slots[id] = slot;
    impl_->config = std::move(next);
  }
  std::fprintf(stderr, "kite: device_add %s: PCI slot %u\n", id.c_str(), slot);
  return {};
}

Result<void> Machine::RemoveDevice(const std::string& id) {
  std::lock_guard control(impl_->control);
  Vm* vm = TRY(impl_->HotplugVm("device_del"));
  if (vm->registry().Find(id) == nullptr) {
    return Err(ErrorKind::kDeviceNotFound, "Device '" + id + "' not found");
  }
  if (!impl_->config.disks.empty() && cli::DiskId(impl_->config, 0) == id) {
    return Err("device_del: '" + id + "' is the root disk (the first disk): it cannot be removed");
  }
  if (impl_->UnplugPending(id)) {
    return Err("Device '" + id + "' is already in the process of unplug");
  }
  if (std::string job = impl_->jobs->JobOn(id); !job.empty()) {
    return Err("device_del: block job '" + job + "' works on '" + id +
               "': finish or cancel it first");
  }
  {
    // Registered before the guest is asked: its _EJ0 may come at once.
    std::lock_guard lock(impl_->hotplug_mutex);
    impl_->unplugs.push_back({id, std::chrono::steady_clock::now() +
                                      std::chrono::milliseconds(impl_->config.unplug_timeout_ms)});
  }
  if (auto asked = vm->RequestUnplug(id); !asked) {
    std::lock_guard lock(impl_->hotplug_mutex);
    std::erase_if(impl_->unplugs, [&](const Impl::PendingUnplug& u) { return u.id == id; });
    return std::move(asked).error();
  }
  impl_->hotplug_wake.notify_all();
  return {};
}

}  // namespace kite
