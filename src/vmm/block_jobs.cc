// BlockJobs and BlockJob's state machine. See block_jobs.h for the model and the events.
#include "vmm/block_jobs.h"

#include <pthread.h>

#include <algorithm>

#include "base/seccomp.h"
#include "vmm/block_job.h"

namespace kite {

const char* BlockJobTypeName(BlockJobType type) {
  switch (type) {
    case BlockJobType::kCommit:
      return "commit";
    case BlockJobType::kStream:
      return "stream";
    case BlockJobType::kBackup:
      return "backup";
  }
  return "?";
}

// ---- BlockJob ----

BlockJob::BlockJob(BlockJobType type, std::string id, std::string device, uint64_t speed,
                   const BlockJobHost* host)
    : type_(type), id_(std::move(id)), device_(std::move(device)), host_(host), speed_(speed) {}

BlockJob::~BlockJob() {
  Join();
}

Result<void> BlockJob::Start(std::shared_ptr<storage::DiskImage> image) {
  TRY(Prepare(std::move(image)));
  host_->emit("JOB_STATUS_CHANGE", {{"id", id_}, {"status", "created"}});
  thread_ = std::thread([this] { Main(); });
  return {};
}

void BlockJob::Join() {
  if (thread_.joinable()) thread_.join();
}

void BlockJob::Main() {
  pthread_setname_np(pthread_self(), "kite-job");
  seccomp::Confine(seccomp::ThreadKind::kBlockJob);
  SetStatus("running");
  Result<void> ran = Run();
  bool cancelled, force;
  {
    std::lock_guard lock(mu_);
    cancelled = cancel_;
    force = force_;
  }
  // A cancel after READY without force completes an active commit without the pivot (QEMU's
  // mirror semantics); any other cancel aborts.
  bool soft_cancel = cancelled && !force && ready_;
  if (ran && (!cancelled || soft_cancel)) {
    SetStatus("waiting");
    SetStatus("pending");
    Result<void> finished = Finish(/*pivot=*/!cancelled);
    if (!finished) {
      Abort();
      SetStatus("aborting");
      EmitEnd("BLOCK_JOB_COMPLETED", finished.error().message());
    } else {
      EmitEnd("BLOCK_JOB_COMPLETED", "");
    }
  } else {
    Abort();
    SetStatus("aborting");
    if (!ran) {
      host_->emit("BLOCK_JOB_ERROR",
                  {{"device", id_}, {"operation", "write"}, {"action", "report"}});
      EmitEnd("BLOCK_JOB_COMPLETED", ran.error().message());
    } else {
      EmitEnd("BLOCK_JOB_CANCELLED", "");
    }
  }
  SetStatus("concluded");
  SetStatus("null");
  std::lock_guard lock(mu_);
  done_ = true;
}

void BlockJob::SetStatus(const char* status) {
  {
    std::lock_guard lock(mu_);
    status_ = status;
  }
  host_->emit("JOB_STATUS_CHANGE", {{"id", id_}, {"status", status}});
}

nlohmann::json BlockJob::EventData() const {
  std::lock_guard lock(mu_);
  return {{"type", BlockJobTypeName(type_)},
          {"device", id_},
          {"len", len_},
          {"offset", offset_},
          {"speed", speed_}};
}

void BlockJob::EmitEnd(const char* event, const std::string& error) {
  nlohmann::json data = EventData();
  if (!error.empty()) data["error"] = error;
  host_->emit(event, std::move(data));
}

Result<void> BlockJob::RequestCancel(bool force) {
  std::lock_guard lock(mu_);
  cancel_ = true;
  force_ = force_ || force;
  pause_ = false;
  wake_.notify_all();
  return {};
}

Result<void> BlockJob::RequestPause() {
  std::lock_guard lock(mu_);
  if (cancel_ || status_ == "waiting" || status_ == "pending" || status_ == "aborting" ||
      status_ == "concluded" || status_ == "null") {
    return Err("Job '" + id_ + "' in state '" + status_ + "' cannot accept command verb 'pause'");
  }
  pause_ = true;
  return {};
}

Result<void> BlockJob::RequestResume() {
  std::lock_guard lock(mu_);
  if (!pause_) {
    return Err("Job '" + id_ + "' in state '" + status_ + "' cannot accept command verb 'resume'");
  }
  pause_ = false;
  wake_.notify_all();
  return {};
}

Result<void> BlockJob::RequestComplete() {
  std::lock_guard lock(mu_);
  if (!ready_ || cancel_) {
    return Err("Job '" + id_ + "' in state '" + status_ +
               "' cannot accept command verb 'complete'");
  }
  complete_ = true;
  wake_.notify_all();
  return {};
}

void BlockJob::SetSpeed(uint64_t speed) {
  std::lock_guard lock(mu_);
  speed_ = speed;
  window_start_ = std::chrono::steady_clock::now();
  window_bytes_ = 0;
  wake_.notify_all();
}

BlockJobInfo BlockJob::info() const {
  std::lock_guard lock(mu_);
  BlockJobInfo info;
  info.type = BlockJobTypeName(type_);
  info.id = id_;
  info.device = id_;  // QEMU's "device" member is the job's id
  info.len = len_;
  info.offset = offset_;
  info.speed = speed_;
  info.paused = paused_ || pause_;
  info.busy = !info.paused && status_ != "ready";
  info.ready = ready_;
  info.status = status_;
  return info;
}

bool BlockJob::done() const {
  std::lock_guard lock(mu_);
  return done_;
}

void BlockJob::SetLength(uint64_t len) {
  std::lock_guard lock(mu_);
  len_ = len;
}

void BlockJob::AddProgress(uint64_t bytes) {
  std::lock_guard lock(mu_);
  offset_ = std::min(len_, offset_ + bytes);
}

bool BlockJob::Checkpoint(uint64_t bytes) {
  std::unique_lock lock(mu_);
  window_bytes_ += bytes;
  for (;;) {
    if (cancel_) return false;
    if (pause_) {
      if (!paused_) {
        paused_ = true;
        std::string resume_status = status_;
        lock.unlock();
        SetStatus(ready_ ? "standby" : "paused");
        lock.lock();
        wake_.wait(lock, [this] { return !pause_ || cancel_; });
        paused_ = false;
        lock.unlock();
        SetStatus(resume_status.c_str());
        lock.lock();
      }
      continue;
    }
    if (speed_ == 0) return true;
    // Throttle: the bytes of this window may take window_bytes_ / speed_ seconds.
    auto due = window_start_ + std::chrono::microseconds(window_bytes_ * 1000000 / speed_);
    if (std::chrono::steady_clock::now() >= due) {
      if (std::chrono::steady_clock::now() - window_start_ > std::chrono::seconds(1)) {
        window_start_ = std::chrono::steady_clock::now();
        window_bytes_ = 0;
      }
      return true;
    }
    wake_.wait_until(lock, due);
  }
}

void BlockJob::EnterReady() {
  {
    std::lock_guard lock(mu_);
    if (ready_) return;
    ready_ = true;
  }
  SetStatus("ready");
  host_->emit("BLOCK_JOB_READY", EventData());
}

bool BlockJob::WaitInReady(std::chrono::milliseconds poll) {
  std::unique_lock lock(mu_);
  wake_.wait_for(lock, poll, [this] { return complete_ || cancel_; });
  return complete_ || cancel_;
}

bool BlockJob::completing() const {
  std::lock_guard lock(mu_);
  return complete_ || cancel_;
}

// ---- BlockJobs ----

BlockJobs::BlockJobs(BlockJobHost host) : host_(std::move(host)) {}

BlockJobs::~BlockJobs() {
  CancelAll();
}

void BlockJobs::ReapLocked() {
  auto finished = std::stable_partition(jobs_.begin(), jobs_.end(),
                                        [](const auto& job) { return !job->done(); });
  for (auto it = finished; it != jobs_.end(); ++it) (*it)->Join();
  jobs_.erase(finished, jobs_.end());
}

Result<void> BlockJobs::Start(const BlockJobRequest& request,
                              std::shared_ptr<storage::DiskImage> image) {
  std::string id = request.job_id.empty() ? request.device : request.job_id;
  if (request.type == BlockJobType::kBackup && request.format != "qcow2" &&
      request.format != "raw") {
    return Err("drive-backup: format '" + request.format + "' is not supported (qcow2 or raw)");
  }
  std::shared_ptr<BlockJob> job = MakeBlockJob(request, id, &host_);
  {
    std::lock_guard lock(mu_);
    ReapLocked();
    for (const auto& other : jobs_) {
      if (other->id() == id) return Err("Job ID '" + id + "' already in use");
      if (other->device() == request.device) {
        return Err("Node '" + request.device +
                   "' is busy: block device is in use by block job: " + other->info().type);
      }
    }
    jobs_.push_back(job);  // listed (as "created") while it prepares: the disk counts as busy
  }
  // Without mu_: Prepare reconfigures the disk under the machine's control lock, and a control
  // call holding that lock may ask this object whether a disk is busy.
  if (auto started = job->Start(std::move(image)); !started) {
    std::lock_guard lock(mu_);
    jobs_.erase(std::find(jobs_.begin(), jobs_.end(), job));
    return started;
  }
  return {};
}

Result<std::shared_ptr<BlockJob>> BlockJobs::Find(const std::string& id) const {
  for (const auto& job : jobs_) {
    if (job->id() == id && !job->done()) return job;
  }
  return Err(ErrorKind::kDeviceNotActive, "Block job '" + id + "' not found");
}

Result<void> BlockJobs::Cancel(const std::string& id, bool force) {
  std::lock_guard lock(mu_);
  return TRY(Find(id))->RequestCancel(force);
}

Result<void> BlockJobs::Pause(const std::string& id) {
  std::lock_guard lock(mu_);
  return TRY(Find(id))->RequestPause();
}

Result<void> BlockJobs::Resume(const std::string& id) {
  std::lock_guard lock(mu_);
  return TRY(Find(id))->RequestResume();
}

Result<void> BlockJobs::Complete(const std::string& id) {
  std::lock_guard lock(mu_);
  return TRY(Find(id))->RequestComplete();
}

Result<void> BlockJobs::SetSpeed(const std::string& id, uint64_t speed) {
  std::lock_guard lock(mu_);
  TRY(Find(id))->SetSpeed(speed);
  return {};
}

std::vector<BlockJobInfo> BlockJobs::Query() const {
  std::lock_guard lock(mu_);
  std::vector<BlockJobInfo> out;
  for (const auto& job : jobs_) {
    if (!job->done()) out.push_back(job->info());
  }
  return out;
}

std::string BlockJobs::JobOn(const std::string& device) const {
  std::lock_guard lock(mu_);
  for (const auto& job : jobs_) {
    if (job->device() == device && !job->done()) return job->info().type;
  }
  return "";
}

bool BlockJobs::empty() const {
  std::lock_guard lock(mu_);
  return std::all_of(jobs_.begin(), jobs_.end(), [](const auto& job) { return job->done(); });
}

void BlockJobs::CancelAll() {
  std::vector<std::shared_ptr<BlockJob>> jobs;
  {
    std::lock_guard lock(mu_);
    jobs.swap(jobs_);
  }
  for (const auto& job : jobs) (void)job->RequestCancel(/*force=*/true);
  for (const auto& job : jobs) job->Join();
}

}  // namespace kite
