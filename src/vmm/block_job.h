// BlockJob: one block job's state machine, thread, speed limit and events (block_jobs.h has
// the model); block_job_kinds.cc has the three kinds, which implement Prepare, Run, Finish and
// Abort. Private to block_jobs.cc and block_job_kinds.cc.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "vmm/block_jobs.h"

namespace kite {

class BlockJob {
 public:
  BlockJob(BlockJobType type, std::string id, std::string device, uint64_t speed,
           const BlockJobHost* host);
  virtual ~BlockJob();

  const std::string& id() const { return id_; }
  const std::string& device() const { return device_; }
  // Control calls (any thread): set a flag and wake the job.
  Result<void> RequestCancel(bool force);
  Result<void> RequestPause();
  Result<void> RequestResume();
  Result<void> RequestComplete();
  void SetSpeed(uint64_t speed);
  BlockJobInfo info() const;
  bool done() const;

  // Runs Prepare() on the caller's thread, then the job on its own.
  Result<void> Start(std::shared_ptr<storage::DiskImage> image);
  void Join();

 protected:
  // On the control thread, before the job counts as started: check the request against the
  // chain and install what the job needs (filters, reopened layers). An error: no job.
  virtual Result<void> Prepare(std::shared_ptr<storage::DiskImage> image) = 0;
  // On the job's thread: the copy. Returns when done, or early when Checkpoint() says stop.
  virtual Result<void> Run() = 0;
  // After Run succeeded: the pivot or the clean-up of a finished job. `pivot` is false when an
  // active commit was cancelled after READY (QEMU: it completes without the pivot).
  virtual Result<void> Finish(bool pivot) = 0;
  // After a cancel or an error: leave the disk as it was (filters out).
  virtual void Abort() = 0;

  // --- for the kinds ---
  // Between steps: waits while paused; false when the job must stop (cancelled). Throttles to
  // the speed limit for the `bytes` just copied.
  bool Checkpoint(uint64_t bytes);
  void SetLength(uint64_t len);
  void AddProgress(uint64_t bytes);
  // Commit of the active layer: announce READY once (event), and from then on wait for
  // block-job-complete or a cancel. WaitInReady returns true when it is time to finish.
  void EnterReady();
  bool WaitInReady(std::chrono::milliseconds poll);
  bool completing() const;
  const BlockJobHost& host() const { return *host_; }

 private:
  void Main();
  void SetStatus(const char* status);
  void EmitEnd(const char* event, const std::string& error);
  // BLOCK_JOB_*'s data: type, device (the job's id), len, offset, speed.
  nlohmann::json EventData() const;

  const BlockJobType type_;
  const std::string id_;
  const std::string device_;
  const BlockJobHost* host_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::string status_ = "created";
  uint64_t len_ = 0, offset_ = 0, speed_ = 0;
  bool pause_ = false, paused_ = false, cancel_ = false, force_ = false;
  bool ready_ = false, complete_ = false, done_ = false;
  // Throttle: bytes copied since the window opened.
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
  uint64_t window_bytes_ = 0;
  std::thread thread_;
};

// The kinds (block_job_kinds.cc).
std::shared_ptr<BlockJob> MakeBlockJob(const BlockJobRequest& request, std::string id,
                                       const BlockJobHost* host);

}  // namespace kite
