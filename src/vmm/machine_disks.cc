// Machine's live disk operations: blockdev-snapshot-sync (SnapshotDisk), block_resize
// (ResizeDisk), set_link (SetLink), announce-self (AnnounceSelf) and the block jobs (block_jobs.h).
// Each change of a disk's image goes through LiveDisk::Reconfigure under the machine's control
// lock, and the machine's configuration follows the disk's image (a restart, or a VM snapshot, uses
// the new chain).
#include <filesystem>

#include "storage/job_filter.h"
#include "storage/qcow2/qcow2.h"
#include "vmm/block_jobs.h"
#include "vmm/device_options.h"
#include "vmm/machine_impl.h"
#include "vmm/vm_virtio.h"

namespace kite {
namespace {

std::string Absolute(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

// QEMU's text for an unknown block device.
Error NoDisk(const std::string& device) {
  return Error(ErrorKind::kGeneric, "Cannot find device='" + device + "' nor node-name=''");
}

// Opens `file` as the disk's new top with `backing` (the old top) right below it; on success
// sets `disk` and returns "", else returns why (with nothing left open).
std::string OpenOverlay(const std::string& file, const std::string& backing,
                        const storage::OpenOptions& open,
                        std::shared_ptr<storage::DiskImage>& disk) {
  auto overlay = storage::OpenImage(file, storage::ImageFormat::kQcow2, open);
  if (!overlay) return overlay.error().message();
  storage::DiskImage* below = (*overlay)->backing();
  auto layer = below ? storage::FindLayer(*below, backing) : std::nullopt;
  if (!layer || layer->second != 0) {
    return file + " does not name the disk's image " + backing + " as its backing file";
  }
  disk = std::shared_ptr<storage::DiskImage>(std::move(*overlay));
  return "";
}

}  // namespace

int Machine::Impl::DiskIndex(const std::string& device) const {
  for (size_t i = 0; i < config.disks.size(); ++i) {
    if (cli::DiskId(config, i) == device) return static_cast<int>(i);
  }
  return -1;
}

Result<void> Machine::Impl::ReconfigureDiskLocked(const std::string& device,
                                                  const virtio::BlockDevice::ImageChange& change) {
  Vm* current = CurrentVm();
  LiveDisk* disk = current ? FindLiveDisk(current->registry(), device) : nullptr;
  int index = DiskIndex(device);
  if (!disk || index < 0) return NoDisk(device);
  TRY(disk->Reconfigure(change));
  // The configuration names the disk's image from now on (a filter forwards path and format).
  std::shared_ptr<storage::DiskImage> image = disk->image();
  if (image) {
    std::lock_guard lock(mutex);
    config.disks[index].path = image->path();
    config.disks[index].format = storage::ImageFormatName(image->format());
  }
  return {};
}

Result<storage::OpenOptions> Machine::Impl::DiskOpenOptions(const std::string& device) const {
  int index = DiskIndex(device);
  if (index < 0) return NoDisk(device);
  storage::OpenOptions options;
  options.read_only = config.disks[index].read_only;
  options.cache = TRY(storage::ParseCacheMode(config.disks[index].cache));
  return options;
}

void Machine::Impl::MakeJobs() {
  BlockJobHost host;
  host.reconfigure = [this](const std::string& device,
                            const virtio::BlockDevice::ImageChange& change) {
    std::lock_guard control_lock(control);
    return ReconfigureDiskLocked(device, change);
  };
  host.open_options = [this](const std::string& device) { return DiskOpenOptions(device); };
  host.emit = [this](const std::string& name, nlohmann::json data) { Emit(name, std::move(data)); };
  jobs = std::make_unique<kite::BlockJobs>(std::move(host));
}

// Refuses a change to a disk a job works on, a read-only disk, or a VM that is not there.
Result<std::shared_ptr<storage::DiskImage>> Machine::Impl::WritableDisk(const std::string& device) {
  Vm* current = CurrentVm();
  LiveDisk* disk = current ? FindLiveDisk(current->registry(), device) : nullptr;
  if (!disk || !disk->image()) return NoDisk(device);
  if (std::string job = jobs->JobOn(device); !job.empty()) {
    return Err("Node '" + device + "' is busy: block device is in use by block job: " + job);
  }
  std::shared_ptr<storage::DiskImage> image = disk->image();
  if (image->read_only()) return Err("Block node is read-only: " + device);
  return image;
}

Result<void> Machine::SnapshotDisk(const DiskSnapshotOptions& options) {
  std::lock_guard control(impl_->control);
  if (options.format != "qcow2") {
    return Err("blockdev-snapshot-sync: format '" + options.format + "' is not supported (qcow2)");
  }
  std::shared_ptr<storage::DiskImage> image = TRY(impl_->WritableDisk(options.device));
  if (storage::FindLayer(*image, options.file)) {
    return Err("blockdev-snapshot-sync: '" + options.file + "' is part of the disk's chain");
  }
  std::string old_path = Absolute(image->path());
  storage::ImageFormat old_format = image->format();
  uint64_t size = image->size();
  image.reset();
  storage::OpenOptions open = TRY(impl_->DiskOpenOptions(options.device));
  if (!options.existing) {
    storage::Qcow2CreateOptions create;
    create.size = size;
    create.backing_file = old_path;
    create.backing_format = storage::ImageFormatName(old_format);
    TRY_CTX(storage::CreateQcow2(options.file, create), "blockdev-snapshot-sync");
  }
  return impl_->ReconfigureDiskLocked(
      options.device, [&](std::shared_ptr<storage::DiskImage>& disk) -> Result<void> {
        disk.reset();  // the old image's exclusive lock goes; it is reopened read-only below
        std::string why = OpenOverlay(options.file, old_path, open, disk);
        if (why.empty()) return {};
        storage::OpenOptions as_it_was = open;
        as_it_was.data_file = impl_->config.disks[impl_->DiskIndex(options.device)].data_file;
        disk = TRY(storage::OpenImage(old_path, old_format, as_it_was));
        if (!options.existing) std::filesystem::remove(options.file);
        return Err("blockdev-snapshot-sync: " + why);
      });
}

Result<void> Machine::ResizeDisk(const std::string& device, uint64_t size) {
  std::lock_guard control(impl_->control);
  TRY(impl_->WritableDisk(device));
  if (size % 512 != 0) return Err("block_resize: size must be a multiple of 512 bytes");
  return impl_->ReconfigureDiskLocked(
      device, [&](std::shared_ptr<storage::DiskImage>& disk) -> Result<void> {
        return storage::GrowOpenImage(*disk, size);
      });
}

Result<void> Machine::SetLink(const std::string& nic, bool up) {
  std::lock_guard control(impl_->control);
  Vm* current = impl_->CurrentVm();
  if (!current) return Err(ErrorKind::kDeviceNotFound, "Device '" + nic + "' not found");
  return SetNetLink(current->registry(), nic, up);
}

Result<void> Machine::AnnounceSelf(const AnnounceRequest& request) {
  TRY(CheckAnnounceRequest(request));
  std::lock_guard control(impl_->control);
  Vm* current = impl_->CurrentVm();
  if (!current) return Err(ErrorKind::kDeviceNotActive, "the VM is not running");
  return AnnounceNets(current->registry(), request);
}

Result<void> Machine::SetDiskThrottle(const std::string& device, const DiskThrottle& limit,
                                      const std::optional<std::string>& group) {
  TRY(cli::ValidateDiskThrottle(limit));
  if (group) TRY(cli::ValidateThrottleGroupName(*group, /*may_be_empty=*/false));
  std::lock_guard control(impl_->control);
  Vm* current = impl_->CurrentVm();
  int index = impl_->DiskIndex(device);
  if (!current || index < 0) {
    return Err(ErrorKind::kDeviceNotFound, "Device '" + device + "' not found");
  }
  std::string name = TRY(
      kite::SetDiskThrottle(current->registry(), current->throttle_groups(), device, limit, group));
  // The configuration follows (snapshots and restarts keep it): the disk, and every disk of
  // its group.
  std::lock_guard lock(impl_->mutex);
  impl_->config.disks[index].throttle_group = name;
  for (DiskConfig& disk : impl_->config.disks) {
    if (&disk == &impl_->config.disks[index] || (!name.empty() && disk.throttle_group == name)) {
      disk.throttle = limit;
    }
  }
  return {};
}

Result<void> Machine::SetNetThrottle(const std::string& nic, const Throttle& limit) {
  TRY(cli::ValidateRateLimit(limit, "bps", "pps"));
  std::lock_guard control(impl_->control);
  Vm* current = impl_->CurrentVm();
  int index = -1;
  for (size_t i = 0; i < impl_->config.nets.size(); ++i) {
    if (cli::NetId(impl_->config, i) == nic) index = static_cast<int>(i);
  }
  if (!current || index < 0) {
    return Err(ErrorKind::kDeviceNotFound, "Device '" + nic + "' not found");
  }
  TRY(kite::SetNetThrottle(current->registry(), nic, limit));
  std::lock_guard lock(impl_->mutex);
  impl_->config.nets[index].throttle = limit;
  return {};
}

Result<void> Machine::StartBlockJob(const BlockJobRequest& request) {
  std::shared_ptr<storage::DiskImage> image;
  {
    std::lock_guard control(impl_->control);
    Vm* current = impl_->CurrentVm();
    LiveDisk* disk = current ? FindLiveDisk(current->registry(), request.device) : nullptr;
    if (!disk || !disk->image()) return NoDisk(request.device);
    image = disk->image();
    if (request.type != BlockJobType::kBackup && image->read_only()) {
      return Err("Block node is read-only: " + request.device);
    }
  }
  // Without the control lock: the job's Prepare reconfigures the disk, which takes it.
  return impl_->jobs->Start(request, std::move(image));
}

Result<void> Machine::ControlBlockJob(const std::string& id, BlockJobAction action) {
  switch (action) {
    case BlockJobAction::kCancel:
      return impl_->jobs->Cancel(id, false);
    case BlockJobAction::kForceCancel:
      return impl_->jobs->Cancel(id, true);
    case BlockJobAction::kPause:
      return impl_->jobs->Pause(id);
    case BlockJobAction::kResume:
      return impl_->jobs->Resume(id);
    case BlockJobAction::kComplete:
      return impl_->jobs->Complete(id);
  }
  return Err("unknown block job action");
}

Result<void> Machine::SetBlockJobSpeed(const std::string& id, uint64_t speed) {
  return impl_->jobs->SetSpeed(id, speed);
}

std::vector<BlockJobInfo> Machine::BlockJobs() const {
  return impl_->jobs->Query();
}

}  // namespace kite
