// Machine::SaveSnapshot and Machine::Restore: a paused VM written to a snapshot directory, and
// a snapshot brought back to life in a new process. docs/SNAPSHOTS.md is the reference.
//
//   save:    paused → save-vm: devices quiesced (disks drained and flushed) → device state →
//            VM state (PIT, clock as held at the pause, irqchips) → vCPU state → memory file,
//            config.json, state (checksummed) into a partial directory → swapped in at DIR.
//   restore: state read and checked (length, magic, version, CRC) → config from the state,
//            overrides applied → disks checked unchanged (or overlays made for clones) →
//            memory file size checked and mapped MAP_PRIVATE → machine built → vCPU, VM and
//            device state applied (everything parsed and checked first) → started, paused or
//            running.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "storage/qcow2/qcow2.h"
#include "vmm/cli.h"
#include "vmm/config_json.h"
#include "vmm/device_options.h"
#include "vmm/machine_impl.h"
#include "vmm/snapshot/memory_file.h"
#include "vmm/snapshot/snapshot_file.h"
#include "vmm/snapshot/snapshot_writer.h"
#include "vmm/vm_virtio.h"

namespace kite {
namespace {

std::string Absolute(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

// The configuration as a restore needs it: paths absolute (a restore may run elsewhere).
VmConfig SnapshotConfig(const VmConfig& config) {
  VmConfig c = config;
  c.kernel = Absolute(c.kernel);
  c.initrd = Absolute(c.initrd);
  if (c.serial == SerialMode::kFile) c.serial_path = Absolute(c.serial_path);
  for (DiskConfig& disk : c.disks) disk.path = Absolute(disk.path);
  c.start_paused = false;
  c.api_sock.clear();
  return c;
}

// Files the snapshot must never be written over (C13): every layer of every disk and the
// memory file the VM maps (after a restore).
std::vector<std::string> ForbiddenPaths(const Vm& vm) {
  std::vector<std::string> out;
  for (const BlockInfo& block : QueryBlocks(vm.registry())) {
    for (const ImageInfo& image : block.chain) out.push_back(image.filename);
  }
  if (!vm.memory().backing_path().empty()) out.push_back(vm.memory().backing_path());
  return out;
}

Result<void> WriteSnapshot(Vm& vm, const VmConfig& config, const std::string& dir) {
  nlohmann::json body = TRY(vm.SaveState());
  VmConfig saved_config = SnapshotConfig(config);
  body["config"] = ConfigToJson(saved_config);
  body["disks"] = DiskIdentities(vm.registry());
  snapshot::SnapshotWriter writer = TRY(snapshot::SnapshotWriter::Begin(dir, ForbiddenPaths(vm)));
  snapshot::MemoryFileLayout layout = TRY(writer.WriteMemory(vm.memory().regions()));
  body["memory"] = snapshot::MemoryLayoutToJson(layout);
  TRY(writer.WriteConfig(body["config"]));
  TRY(writer.WriteState(body));
  return writer.Commit();
}

// --- Restore ---

Result<VmConfig> ConfigFromState(const nlohmann::json& body, const RestoreOptions& options) {
  if (!body.contains("config") || !body["config"].is_object()) {
    return Err("the state has no \"config\" object");
  }
  VmConfig config;
  TRY_CTX(cli::ApplyConfigJson(body["config"].dump(), "", config), "config");
  config.api_sock = options.api_sock;
  config.start_paused = false;
  if (options.override_serial) {
    config.serial = options.serial;
    config.serial_path = options.serial_path;
  }
  TRY_CTX(ValidateVmConfig(config), "config");
  return config;
}

// A disk changed since the snapshot no longer matches the memory that holds its page cache
// and file system state: refused, naming what changed.
Result<void> CheckDisk(const std::string& id, const DiskConfig& disk, const nlohmann::json& saved) {
  const std::string who = "disk " + id + " (" + disk.path + ")";
  if (!saved.is_object() || !saved.contains("size") || !saved["size"].is_number_unsigned() ||
      !saved.contains("mtime_ns") || !saved["mtime_ns"].is_number_integer() ||
      !saved.contains("format") || !saved["format"].is_string()) {
    return Err("disks." + id + ": expected {\"path\", \"format\", \"size\", \"mtime_ns\"}");
  }
  struct stat st {};
  if (::stat(disk.path.c_str(), &st) != 0) return SysErr(who);
  int64_t mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (saved["format"].get<std::string>() != disk.format && !disk.format.empty()) {
    return Err(who + " is " + disk.format + " but was " + saved["format"].get<std::string>() +
               " when the snapshot was taken");
  }
  if (mtime_ns != saved["mtime_ns"].get<int64_t>()) {
    return Err(who +
               " was modified after the snapshot was taken; its contents no longer match the "
               "snapshot's memory");
  }
  return {};
}

// Clones: a fresh qcow2 overlay per writable disk in `dir`, backed by the snapshot's image
// (opened read-only from then on by this clone, never written).
Result<void> MakeOverlays(VmConfig& config, const std::string& dir) {
  for (size_t i = 0; i < config.disks.size(); ++i) {
    DiskConfig& disk = config.disks[i];
    if (disk.read_only) continue;
    std::string overlay = dir + "/" + cli::DiskId(config, i) + ".qcow2";
    storage::Qcow2CreateOptions o;
    o.backing_file = disk.path;
    o.backing_format = disk.format;
    TRY_CTX(storage::CreateQcow2(overlay, o), "creating the overlay " + overlay);
    std::fprintf(stderr, "kite: disk %s: overlay %s over %s\n", cli::DiskId(config, i).c_str(),
                 overlay.c_str(), disk.path.c_str());
    disk.path = overlay;
    disk.format = "qcow2";
  }
  return {};
}

Result<std::string> MakeOverlayDir(const std::string& parent) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = !parent.empty() ? parent : tmp && *tmp ? tmp : "/var/tmp";
  std::string pattern = base + "/kite-clone-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return SysErr("creating " + pattern);
  return pattern;
}

Result<void> CheckDisks(const VmConfig& config, const nlohmann::json& body) {
  const nlohmann::json* disks = body.contains("disks") ? &body["disks"] : nullptr;
  if (disks == nullptr || !disks->is_object() || disks->size() != config.disks.size()) {
    return Err("disks: expected one entry per disk of the config");
  }
  for (size_t i = 0; i < config.disks.size(); ++i) {
    std::string id = cli::DiskId(config, i);
    if (!disks->contains(id)) return Err("disks: no entry for " + id);
    TRY(CheckDisk(id, config.disks[i], (*disks)[id]));
  }
  return {};
}

// The disks as opened now must have the virtual size the guest saw (a resized image, or an
// overlay over one).
Result<void> CheckDiskSizes(const nlohmann::json& now, const nlohmann::json& saved) {
  for (auto it = now.begin(); it != now.end(); ++it) {
    uint64_t size = (*it)["size"].get<uint64_t>();
    uint64_t was = saved[it.key()]["size"].get<uint64_t>();
    if (size != was) {
      return Err("disk " + it.key() + " is " + std::to_string(size) + " bytes but was " +
                 std::to_string(was) + " when the snapshot was taken");
    }
  }
  return {};
}

}  // namespace

Result<void> Machine::SaveSnapshot(const SnapshotOptions& options) {
  std::lock_guard control(impl_->control);
  if (options.path.empty()) return Err("x-vm-snapshot-save: no path given");
  RunState s = state();
  if (s != RunState::kPaused) {
    return Err("the VM must be paused to save a snapshot (it is " + std::string(RunStateName(s)) +
               ")");
  }
  if (!impl_->jobs->empty()) {
    return Err("a block job is running (query-block-jobs): finish or cancel it before a snapshot");
  }
  {
    std::lock_guard lock(impl_->hotplug_mutex);
    if (!impl_->unplugs.empty()) {
      return Err("device_del of '" + impl_->unplugs.front().id +
                 "' waits for the guest: a snapshot must not catch a device half released");
    }
  }
  impl_->SetState(RunState::kSaveVm);
  auto saved = WriteSnapshot(*impl_->CurrentVm(), impl_->config, options.path);
  impl_->SetState(RunState::kPaused);
  if (!saved) return std::move(saved).error().Context("snapshot " + options.path);
  return {};
}

Result<std::unique_ptr<Machine>> Machine::Restore(const RestoreOptions& options) {
  const std::string dir = options.path;
  nlohmann::json body = TRY(snapshot::ReadStateFile(dir + "/" + snapshot::kStateFileName));
  VmConfig config = TRY_CTX(ConfigFromState(body, options), dir);
  TRY_CTX(CheckDisks(config, body), dir);
  if (!body.contains("memory")) return Err(dir + ": the state has no \"memory\" member");
  snapshot::MemoryFileLayout layout = TRY_CTX(snapshot::MemoryLayoutFromJson(body["memory"]), dir);
  if (layout.file_size != config.memory) {
    return Err(dir + ": memory: the file holds " + std::to_string(layout.file_size) +
               " bytes but the config says " + std::to_string(config.memory));
  }
  // Plain RAM maps the file copy-on-write (pages are read as the guest touches them); RAM from
  // huge pages, preallocated or shared is made as at boot and the file copied into it.
  const std::string memory_file = dir + "/" + snapshot::kMemoryFileName;
  GuestMemory memory;
  if (config.memory_backing == MemoryBacking{}) {
    memory = TRY(snapshot::MapMemoryFile(memory_file, layout));
  } else {
    memory = TRY_CTX(CreateGuestMemory(config), dir + ": guest memory");
    TRY(snapshot::LoadMemoryFile(memory_file, layout, memory));
  }
  if (options.disk_overlays) {
    TRY(MakeOverlays(config, TRY(MakeOverlayDir(options.overlay_parent))));
  }

  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->quirks_applied = true;  // the command line is the snapshot's, already adapted
  impl->state = RunState::kRestoreVm;
  impl->placement = TRY_CTX(PlaceThreads(config), dir);
  impl->MakeJobs();
  impl->StartHotplugThread();
  std::unique_ptr<Vm> vm =
      TRY(Vm::Build(config, impl->created, impl->placement, std::move(memory)));
  TRY_CTX(CheckDiskSizes(DiskIdentities(vm->registry()), body["disks"]), dir);
  TRY_CTX(vm->Restore(body, /*clock_realtime=*/true), dir);
  TRY(vm->Start());
  // Running at once: the NICs announce where they are now (paused: at the first cont).
  if (!options.paused) (void)AnnounceNets(vm->registry(), AnnounceRequest{});
  TRY(impl->Install(std::move(vm), options.paused, RunState::kInMigrate));
  return std::unique_ptr<Machine>(new Machine(std::move(impl)));
}

}  // namespace kite
