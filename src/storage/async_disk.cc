// AsyncDisk: a bounded worker pool running DiskImage calls. See async_disk.h.
#include "storage/async_disk.h"

namespace kite::storage {

AsyncDisk::AsyncDisk(std::shared_ptr<DiskImage> image, AsyncDiskOptions options)
    : image_(std::move(image)), options_(std::move(options)) {
  int n = options_.workers < 1 ? 1 : options_.workers;
  workers_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

AsyncDisk::~AsyncDisk() {
  Drain();
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

void AsyncDisk::Submit(DiskRequest request, DiskCompletion done) {
  if (request.op == DiskOp::kRead) {  // reads of zeros need no worker (fresh images)
    if (std::optional<Result<void>> now = image_->TryReadNow(request.offset, request.iov)) {
      Complete(std::move(done), std::move(*now));
      return;
    }
  }
  {
    std::lock_guard lock(mu_);
    if (queue_.size() < options_.max_queued && !stopping_) {
      queue_.push_back({std::move(request), std::move(done)});
      work_cv_.notify_one();
      return;
    }
  }
  Complete(std::move(done), Err(image_->path() + ": too many queued requests"));
}

void AsyncDisk::Drain() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return queue_.empty() && running_ == 0; });
}

size_t AsyncDisk::in_flight() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_;
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

void AsyncDisk::WorkerLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping
    Item item = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    Complete(std::move(item.done), Execute(item.request));
    lock.lock();
    --running_;
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

}  // namespace kite::storage
