// AsyncDisk: asynchronous requests on a DiskImage for the VMM's devices: scatter-gather read
// and write, flush, discard, write-zeroes. Three ways a request is done:
//  - at once on the submitting thread when the image answers a read without I/O
//    (DiskImage::TryReadNow: qcow2 ranges that read as zeros): no thread hand-off at all;
//  - io_uring (uring_queue.h) for reads and writes of images that expose a plain fd
//    (DiskImage::raw_fd: raw files and block devices), unless O_DIRECT alignment does not hold;
//  - a bounded pool of worker threads calling the DiskImage's thread-safe synchronous calls for
//    everything else (qcow2, whose metadata path is synchronous; flush, discard, write-zeroes;
//    unaligned O_DIRECT requests, which RawImage bounces), and for all requests when io_uring
//    is off or the kernel refuses it (one log line).
// The completion callback goes through the caller's executor (the VMM posts it onto its asio
// loop; tests pass none and are called on the worker or the io_uring completion thread, or
// inside Submit for a request done at once or refused at once (range, read-only, queue
// full)). Completions are handed to the executor in batches: one task for whatever the workers
// (or one io_uring reap) finished since the last task ran, so a busy disk costs one event-loop
// wake-up per batch, not per request. Drain() waits until nothing is queued or running
// (device reset, BAD_INPUTS G33). docs/STORAGE.md has the figures behind the defaults.
//
// Threads: Submit/Drain from any thread; completions on workers or the io_uring completion
// thread (or wherever the executor runs them). The iovecs must stay valid until the request's
// completion has run.
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

class UringQueue;

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

// kAuto: io_uring for images with a raw fd, the worker pool otherwise. kThreads: the pool for
// everything. kIoUring: as kAuto (named, for tools that let the user choose).
enum class AsyncBackend { kAuto, kThreads, kIoUring };

struct AsyncDiskOptions {
  int workers = 8;           // threads; also the number of requests executing at once
  size_t max_queued = 1024;  // Submit refuses (completes with an error) beyond this
  DiskExecutor executor;     // empty: completions run on the worker thread
  AsyncBackend backend = AsyncBackend::kAuto;
  unsigned uring_entries = 128;  // io_uring ring size: reads/writes in the kernel at once
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
  // Batching, like the kernel's blk_plug: between Plug() and Unplug() io_uring requests are
  // queued in the submission ring and handed to the kernel together at Unplug() (one
  // io_uring_enter for a whole virtqueue kick), and requests for the worker pool are queued
  // without waking a worker; Unplug() wakes as many as the queued work needs. Nests; call
  // both on the same thread.
  void Plug();
  void Unplug();

  DiskImage& image() { return *image_; }
  size_t in_flight() const;
  // True when reads and writes go through io_uring (else everything uses the worker pool).
  bool uses_io_uring() const { return uring_ != nullptr; }

 private:
  struct Item {
    DiskRequest request;
    DiskCompletion done;
  };
  using Finished = std::vector<std::pair<DiskCompletion, Result<void>>>;
  void WorkerLoop();
  // Wakes workers for `pending` newly queued items. Needs mu_.
  void WakeWorkersLocked(size_t pending);
  // A worker's finished item: queued for the executor, which gets one task per batch.
  void CompleteFromWorker(DiskCompletion done, Result<void> result);
  // Shared with the posted task, which may run after this AsyncDisk is gone.
  struct DoneQueue {
    std::mutex mu;
    Finished batch;
    bool posted = false;  // a task that will take `batch` is with the executor
    static void Run(const std::shared_ptr<DoneQueue>& queue);
  };
  Result<void> Execute(const DiskRequest& request);
  // Sends a read or write to io_uring; false when it must go to the pool instead.
  bool SubmitToUring(DiskRequest& request, DiskCompletion& done);
  size_t PoolInFlight() const;
  // Hands the result to the executor, or runs `done` here when there is none.
  void Complete(DiskCompletion done, Result<void> result);
  // Hands a batch of io_uring completions to the executor as one task (one wake-up of the
  // event loop per batch, not per request), or runs them here.
  void CompleteBatch(std::vector<std::pair<DiskCompletion, Result<void>>>&& batch);

  std::shared_ptr<DiskImage> image_;
  AsyncDiskOptions options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<Item> queue_;
  size_t running_ = 0;
  size_t idle_workers_ = 0;
  int plugged_ = 0;     // Plug() nesting: queued items wait for Unplug() to wake workers
  size_t unwoken_ = 0;  // items queued while plugged
  bool stopping_ = false;
  // Worker completions waiting for the executor (one posted task runs them all).
  const std::shared_ptr<DoneQueue> done_ = std::make_shared<DoneQueue>();
  std::vector<std::thread> workers_;
  std::unique_ptr<UringQueue> uring_;  // null: no io_uring (format, option or kernel)
  bool direct_ = false;                // the raw fd is O_DIRECT: io_uring needs aligned I/O
};

}  // namespace kite::storage
