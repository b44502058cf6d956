// DeviceRegistry: every device of a VM in one list, each with a stable id, its kind, the
// resources it was given (bus range, interrupt line) and the hooks the VMM drives it through:
// statistics (--stats, x-query-kite-stats), quiesce and resume (pause, snapshot), and state as
// data (snapshot and restore). Legacy devices (vm_devices.cc) and virtio devices (vm_virtio.cc)
// register here alike; hotplug adds and removes virtio entries at run time.
//
// Ids: "com1", "i8042", "rtc", "boot-marker", "acpi-pm", "ged"; disks "vda", "vdb", ... or
// DiskConfig::id; nets "net0", ... or NetConfig::id; "rng0". A snapshot stores each device's
// state under its id, and a restore gives it back to the device with the same id and kind.
//
// Resources come from the ResourceAllocator: virtio-mmio windows and their GSIs are handed out
// lowest-free-first and given back on removal, so a device removed and added again can sit in a
// window that an earlier device left.
//
// Threads: built, saved, restored and torn down on the thread that owns the Vm, with the vCPUs
// parked or not yet started; Stats/Counters from any thread (devices use their own locks).
// Hotplug adds and removes entries on a control thread under the Machine's locks
// (machine_impl.h), which every reader of the list holds too.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace kite {

struct DeviceResources {
  enum class BusKind { kPio, kMmio };
  BusKind bus = BusKind::kPio;
  uint64_t base = 0;
  uint64_t size = 0;
  std::optional<uint32_t> gsi;
};

// What the VMM needs of any device beyond its bus registers.
class VmDevice {
 public:
  virtual ~VmDevice() = default;
  // Finishes in-flight work without resetting the device; no guest memory is written after it
  // returns until Resume(). Called with the vCPUs parked.
  virtual Result<void> Quiesce() { return {}; }
  virtual void Resume() {}
  // The device's state as data (after Quiesce), and back onto a freshly built device before
  // any vCPU runs. RestoreState checks everything before it changes anything.
  virtual Result<nlohmann::json> SaveState() const = 0;
  virtual Result<void> RestoreState(const nlohmann::json& state) = 0;
  // Counters as JSON for x-query-kite-stats, and one line for --stats.
  virtual nlohmann::json Counters() const { return nlohmann::json::object(); }
  virtual std::string StatsLine() const { return ""; }
  // Teardown: stops host-side work (waits for in-flight I/O). Idempotent.
  virtual void Shutdown() {}
};

struct DeviceEntry {
  std::string id;
  std::string kind;  // "uart-16550", "i8042", "rtc-cmos", "boot-marker", "acpi-pm", "acpi-ged",
                     // "virtio-blk", "virtio-net", "virtio-rng"
  DeviceResources resources;
  std::unique_ptr<VmDevice> device;
};

// Virtio-mmio windows and interrupt lines.
class ResourceAllocator {
 public:
  // `windows` windows of `window_size` bytes from `base`; `gsis` in the order they are handed out.
  ResourceAllocator(uint64_t base, uint64_t window_size, uint32_t windows,
                    std::vector<uint32_t> gsis);
  // The lowest free window and the lowest free GSI, or an error when either ran out.
  Result<DeviceResources> AllocateVirtio();
  void Release(const DeviceResources& resources);

 private:
  uint64_t base_;
  uint64_t window_size_;
  std::vector<bool> window_used_;
  std::vector<uint32_t> gsis_;
  std::vector<bool> gsi_used_;
};

class DeviceRegistry {
 public:
  // Fails when the id is taken.
  Result<DeviceEntry*> Add(DeviceEntry entry);
  // Takes the device out (hot-unplug); nullptr when there is none.
  std::unique_ptr<DeviceEntry> Remove(const std::string& id);
  DeviceEntry* Find(const std::string& id);
  const DeviceEntry* Find(const std::string& id) const;
  // In the order devices were added.
  std::vector<std::unique_ptr<DeviceEntry>>& entries() { return entries_; }
  const std::vector<std::unique_ptr<DeviceEntry>>& entries() const { return entries_; }

  // Quiesces every device in order; on failure resumes those already quiesced.
  Result<void> QuiesceAll();
  void ResumeAll();
  // {"<id>": {"kind": ..., "state": ...}, ...}
  Result<nlohmann::json> SaveAll() const;
  // Every saved id must exist here with the same kind, and every device here must be saved.
  Result<void> RestoreAll(const nlohmann::json& saved);
  // Shuts devices down in reverse order. Idempotent.
  void ShutdownAll();
  std::string StatsReport() const;
  nlohmann::json Counters() const;

 private:
  std::vector<std::unique_ptr<DeviceEntry>> entries_;
};

}  // namespace kite
