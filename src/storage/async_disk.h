// AsyncDisk: asynchronous requests on a DiskImage for the VMM's devices. Requests
// (scatter-gather read/write, flush, discard, write-zeroes) are queued and run on a bounded
// pool of worker threads calling the DiskImage's thread-safe synchronous calls; the completion
// callback then goes through the caller's executor (the VMM posts it onto its asio loop; tests
// pass none and are called on the worker, or inside Submit for a read the image answers at
// once: DiskImage::TryReadNow, zeros from metadata in memory). Many requests are in flight at once
// (one per worker, the rest queued). Drain() waits until nothing is queued or running (device
// reset, BAD_INPUTS G33). See docs/STORAGE.md for why a worker pool rather than io_uring.
//
// Threads: Submit/Drain from any thread; completions on workers (or wherever the executor
// runs them). The iovecs must stay valid until the request's completion has run.
#pragma once

#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::storage {

enum class DiskOp { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };

struct DiskRequest {
  DiskOp op = DiskOp::kRead;
  uint64_t offset = 0;
  std::vector<iovec> iov;  // kRead / kWrite
  uint64_t length = 0;     // kDiscard / kWriteZeroes
  bool may_unmap = false;  // kWriteZeroes
};

using DiskCompletion = std::function<void(Result<void>)>;
// Runs a completion somewhere (for example asio::post onto the event loop).
using DiskExecutor = std::function<void(std::function<void()>)>;

struct AsyncDiskOptions {
  int workers = 8;           // threads; also the number of requests executing at once
  size_t max_queued = 1024;  // Submit refuses (completes with an error) beyond this
  DiskExecutor executor;     // empty: completions run on the worker thread
};

class AsyncDisk {
 public:
  AsyncDisk(std::shared_ptr<DiskImage> image, AsyncDiskOptions options);
  ~AsyncDisk();  // drains, then stops the workers
  AsyncDisk(const AsyncDisk&) = delete;
  AsyncDisk& operator=(const AsyncDisk&) = delete;

  // Queues a request; `done` runs exactly once with its result.
  void Submit(DiskRequest request, DiskCompletion done);
  // Blocks until every submitted request has completed (its callback has been handed to the
  // executor, or has run when there is none).
  void Drain();

  DiskImage& image() { return *image_; }
  size_t in_flight() const;

 private:
  struct Item {
    DiskRequest request;
    DiskCompletion done;
  };
  void WorkerLoop();
  Result<void> Execute(const DiskRequest& request);
  // Hands the result to the executor, or runs `done` here when there is none.
  void Complete(DiskCompletion done, Result<void> result);

  std::shared_ptr<DiskImage> image_;
  AsyncDiskOptions options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<Item> queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace kite::storage
