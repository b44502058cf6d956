// AsyncDisk: io_uring for raw reads and writes, a bounded worker pool running DiskImage calls
// for the rest. See async_disk.h.
#include "storage/async_disk.h"

#include <fcntl.h>
#include <pthread.h>

#include <algorithm>

#include "base/log.h"
#include "base/seccomp.h"
#include "storage/raw_image.h"
#include "storage/uring_queue.h"

namespace kite::storage {
AsyncDisk::AsyncDisk(std::shared_ptr<DiskImage> image, AsyncDiskOptions options)
    : image_(std::move(image)), options_(std::move(options)) {
  int n = options_.workers < 1 ? 1 : options_.workers;
  workers_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  std::optional<int> fd = image_->raw_fd();
  if (!fd || options_.backend == AsyncBackend::kThreads) return;
  int flags = ::fcntl(*fd, F_GETFL);
  direct_ = flags >= 0 && (flags & O_DIRECT) != 0;
  UringQueue::Options uo{*fd, options_.uring_entries, options_.max_queued, direct_};
  auto queue = UringQueue::Create(uo, [this](UringQueue::Finished&& batch) {
    for (auto& [done, result] : batch) {  // errors name the image, as RawImage's do (F2)
      if (!result) result = std::move(result).error().Context(image_->path());
    }
    CompleteBatch(std::move(batch));
  });
  if (queue) {
    uring_ = std::move(*queue);
  } else {
    KITE_LOG(Warn, "%s: io_uring unavailable (%s); using worker threads", image_->path().c_str(),
             queue.error().message().c_str());
  }
}

AsyncDisk::~AsyncDisk() {
  Drain();
  uring_.reset();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void AsyncDisk::Complete(DiskCompletion done, Result<void> result) {
  if (options_.executor) {
    options_.executor([done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  } else {
    done(std::move(result));
  }
}

void AsyncDisk::CompleteBatch(std::vector<std::pair<DiskCompletion, Result<void>>>&& batch) {
  if (!options_.executor) {
    for (auto& [done, result] : batch) done(std::move(result));
    return;
  }
  // std::function needs a copyable callable: share the batch.
  auto shared =
      std::make_shared<std::vector<std::pair<DiskCompletion, Result<void>>>>(std::move(batch));
  options_.executor([shared] {
    for (auto& [done, result] : *shared) done(std::move(result));
  });
}

void AsyncDisk::Submit(DiskRequest request, DiskCompletion done) {
  if (request.op == DiskOp::kRead) {  // reads of zeros need no worker (fresh images)
    if (std::optional<Result<void>> now = image_->TryReadNow(request.offset, request.iov)) {
      Complete(std::move(done), std::move(*now));
      return;
    }
  }
  if (SubmitToUring(request, done)) return;
  {
    std::lock_guard lock(mu_);
    if (queue_.size() < options_.max_queued && !stopping_) {
      queue_.push_back({std::move(request), std::move(done)});
      if (plugged_ > 0) {
        ++unwoken_;
      } else {
        WakeWorkersLocked(1);
      }
      return;
    }
  }
  Complete(std::move(done), Err(image_->path() + ": too many queued requests"));
}

bool AsyncDisk::SubmitToUring(DiskRequest& r, DiskCompletion& done) {
  if (!uring_ || (r.op != DiskOp::kRead && r.op != DiskOp::kWrite)) return false;
  bool write = r.op == DiskOp::kWrite;
  uint64_t len = IovLength(r.iov);
  uint64_t size = image_->size();
  // Refusals (range, read-only, failed image; G16, G19) and empty requests take the pool path,
  // where RawImage answers them with its own messages and writes nothing; so do unaligned
  // O_DIRECT requests, which RawImage bounces.
  if (len == 0 || r.offset > size || len > size - r.offset) return false;
  if (write && (image_->read_only() || image_->failed())) return false;
  if (direct_ && !DirectAligned(r.offset, r.iov)) return false;
  if (!uring_->Submit(write, r.offset, std::move(r.iov), done)) {
    Complete(std::move(done), Err(image_->path() + ": too many queued requests"));
  }
  return true;
}

void AsyncDisk::Drain() {
  // A completion may submit more work to either mechanism: wait until both are idle together.
  while (true) {
    {
      std::unique_lock lock(mu_);
      idle_cv_.wait(lock, [this] { return queue_.empty() && running_ == 0; });
    }
    if (!uring_) return;
    uring_->Drain();
    if (in_flight() == 0) return;
  }
}

size_t AsyncDisk::PoolInFlight() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_;
}

void AsyncDisk::WakeWorkersLocked(size_t pending) {
  if (pending == 0 || idle_workers_ == 0) return;
  // One worker per item (an item may block on the disk for a long time), at most the idle ones;
  // a worker takes the next item before it sleeps again.
  size_t wake = std::min(idle_workers_, pending);
  if (wake == idle_workers_) {
    work_cv_.notify_all();
  } else {
    for (size_t i = 0; i < wake; ++i) work_cv_.notify_one();
  }
}

void AsyncDisk::Plug() {
  if (uring_) uring_->Plug();
  std::lock_guard lock(mu_);
  ++plugged_;
}

void AsyncDisk::Unplug() {
  {
    std::lock_guard lock(mu_);
    if (plugged_ > 0 && --plugged_ == 0) {
      WakeWorkersLocked(unwoken_);
      unwoken_ = 0;
    }
  }
  if (uring_) uring_->Unplug();
}

size_t AsyncDisk::in_flight() const {
  return PoolInFlight() + (uring_ ? uring_->in_flight() : 0);
}

Result<void> AsyncDisk::Execute(const DiskRequest& r) {
  switch (r.op) {
    case DiskOp::kRead:
      return image_->ReadV(r.offset, r.iov);
    case DiskOp::kWrite:
      return image_->WriteV(r.offset, r.iov);
    case DiskOp::kFlush:
      return image_->Flush();
    case DiskOp::kDiscard:
      return image_->Discard(r.offset, r.length);
    case DiskOp::kWriteZeroes:
      return image_->WriteZeroes(r.offset, r.length, r.may_unmap);
  }
  return Err("unknown disk request");
}

void AsyncDisk::CompleteFromWorker(DiskCompletion done, Result<void> result) {
  if (!options_.executor) {
    done(std::move(result));
    return;
  }
  {
    std::lock_guard lock(done_->mu);
    done_->batch.emplace_back(std::move(done), std::move(result));
    if (done_->posted) return;  // the posted task has not taken the batch yet: it will
    done_->posted = true;
  }
  options_.executor([queue = done_] { DoneQueue::Run(queue); });
}

void AsyncDisk::DoneQueue::Run(const std::shared_ptr<DoneQueue>& queue) {
  Finished batch;
  {
    std::lock_guard lock(queue->mu);
    batch.swap(queue->batch);
    queue->posted = false;
  }
  for (auto& [done, result] : batch) done(std::move(result));
}

void AsyncDisk::WorkerLoop() {
  pthread_setname_np(pthread_self(), "kite-disk");
  seccomp::Confine(seccomp::ThreadKind::kDiskWorker);
  std::unique_lock lock(mu_);
  while (true) {
    ++idle_workers_;
    work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    --idle_workers_;
    if (queue_.empty()) return;  // stopping
    Item item = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    CompleteFromWorker(std::move(item.done), Execute(item.request));
    lock.lock();
    --running_;
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

}  // namespace kite::storage
