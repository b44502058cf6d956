// Block jobs: block-stream, block-commit and drive-backup running in the background on a
// running VM's disks, in QEMU's job model (qapi/job.json, qapi/block-core.json):
//
//   created → running ⇄ paused → (commit of the active layer: ready ⇄ standby) →
//   waiting → pending → concluded → null            (success: BLOCK_JOB_COMPLETED)
//   … → aborting → concluded → null                 (cancel: BLOCK_JOB_CANCELLED;
//                                                    error: BLOCK_JOB_ERROR, then
//                                                    BLOCK_JOB_COMPLETED with "error")
//
// Every change of status is a JOB_STATUS_CHANGE event. Jobs are auto-finalized and
// auto-dismissed (QEMU's defaults): a finished job leaves query-block-jobs. One job per disk.
//
// A job copies in steps of at most kJobStep bytes on its own thread, so the guest's I/O never
// waits for more than one step; the guest's writes to the disk go through a JobFilter
// (storage/job_filter.h) while the job needs to see them. A job changes the disk's image only
// through BlockJobHost::reconfigure, with the disk's I/O stopped: that is where the filter is
// put in and taken out and where the chain is reopened (the pivot).
//
// Threads: BlockJobs' calls from the control thread; each job's work on its own thread.
// The control calls only set flags and return (cancel and complete are asynchronous, as in
// QEMU); the destructor and CancelAll wait for the threads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "kite/kite.h"
#include "storage/disk_image.h"
#include "virtio/block.h"

namespace kite {

inline constexpr uint64_t kJobStep = 1 << 20;          // bytes copied between checks
inline constexpr uint64_t kJobGranularity = 64 << 10;  // the JobFilter's chunk

// What a job needs from the machine.
struct BlockJobHost {
  // LiveDisk::Reconfigure on disk `device`, serialised with the machine's other control calls;
  // the machine's configuration follows the disk's new image.
  std::function<Result<void>(const std::string& device,
                             const virtio::BlockDevice::ImageChange& change)>
      reconfigure;
  // How the disk's images are opened (its cache mode, read-write).
  std::function<Result<storage::OpenOptions>(const std::string& device)> open_options;
  std::function<void(const std::string& name, nlohmann::json data)> emit;
};

class BlockJob;

class BlockJobs {
 public:
  explicit BlockJobs(BlockJobHost host);
  ~BlockJobs();  // CancelAll()

  // Checks the request against the disk's chain, installs what the job needs and starts it.
  // `image` is the disk's current image.
  Result<void> Start(const BlockJobRequest& request, std::shared_ptr<storage::DiskImage> image);
  Result<void> Cancel(const std::string& id, bool force);
  Result<void> Pause(const std::string& id);
  Result<void> Resume(const std::string& id);
  Result<void> Complete(const std::string& id);
  Result<void> SetSpeed(const std::string& id, uint64_t speed);
  std::vector<BlockJobInfo> Query() const;
  // The job on disk `device` ("" when none): live snapshots and resizes are refused meanwhile.
  std::string JobOn(const std::string& device) const;
  bool empty() const;
  // Cancels every job (forced) and waits for their threads.
  void CancelAll();

 private:
  Result<std::shared_ptr<BlockJob>> Find(const std::string& id) const;
  void ReapLocked();  // joins the threads of finished jobs

  BlockJobHost host_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<BlockJob>> jobs_;
};

// QMP names: "commit", "stream", "backup"; and back.
const char* BlockJobTypeName(BlockJobType type);

}  // namespace kite
