// UringQueue: reads and writes on one file descriptor through io_uring (liburing), the fast path
// of AsyncDisk for raw images (see async_disk.h, docs/STORAGE.md "Async layer").
//
// Requests become IORING_OP_READV/WRITEV SQEs. At most `entries` are in the kernel at once; more
// wait in a userspace queue (bounded by `max_queued`; beyond it Submit refuses). One completion
// thread owns the completion ring: it blocks in io_uring_wait_cqe, reaps completions in batches,
// resubmits the rest of a short transfer and -EAGAIN/-EINTR results, zero-fills reads that reach
// end of file (as PreadvFull does), and hands each final result to `finish`. The caller checks
// ranges, permissions and O_DIRECT alignment before Submit.
//
// Threads: Submit/Drain/in_flight from any thread (the submission ring and the counters are under
// mu_); completions on the completion thread. A request counts as in flight until `finish` has
// returned, so Drain() covers the hand-off (BAD_INPUTS G33).
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/result.h"
#include "storage/async_disk.h"

namespace kite::storage {

class UringQueue {
 public:
  // Passes the finished requests of one reaped batch on, in completion order (AsyncDisk: to
  // the executor as one task, or runs them).
  using Finished = std::vector<std::pair<DiskCompletion, Result<void>>>;
  using Finish = std::function<void(Finished&&)>;
  struct Options {
    int fd = -1;
    unsigned entries = 128;    // ring size: requests in the kernel at once
    size_t max_queued = 1024;  // requests waiting in userspace beyond the ring
    bool direct = false;       // O_DIRECT fd: a short read ending unaligned means end of file
  };

  // Fails when the kernel refuses io_uring (old kernel, seccomp, RLIMIT_MEMLOCK, bad size).
  static Result<std::unique_ptr<UringQueue>> Create(const Options& options, Finish finish);
  ~UringQueue();  // drains, then stops the completion thread
  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;

  // Queues a read or write of `iov` at `offset`. Takes `done` and returns true, or returns false
  // (queue full or stopping) and leaves `done` with the caller.
  bool Submit(bool write, uint64_t offset, std::vector<iovec>&& iov, DiskCompletion& done);
  void Drain();
  size_t in_flight() const;
  // While plugged (nesting count > 0), Submit leaves SQEs in the ring; Unplug submits them.
  void Plug();
  void Unplug();

 private:
  struct Op;
  UringQueue(const Options& options, Finish finish)
      : options_(options), finish_(std::move(finish)) {}
  // Puts `op` into the submission ring, or back at the front of the waiting queue when the ring
  // has no free SQE. Needs mu_.
  void PushLocked(Op* op);
  void SubmitLocked();
  // Moves waiting requests into the ring while it has room, then submits. Needs mu_.
  void RefillLocked();
  void CompletionLoop();
  // Takes every completion from the ring; true when the stop marker (user_data 0) was one.
  bool Reap(std::vector<std::pair<Op*, int>>& reaped);
  // One reaped completion: true when `op` needs another SQE (short transfer, EAGAIN).
  bool Advance(Op& op, int res, Result<void>& result) const;

  const Options options_;
  const Finish finish_;
  io_uring ring_{};
  bool ring_ready_ = false;
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::deque<Op*> waiting_;  // not yet in the ring
  unsigned in_ring_ = 0;     // SQEs handed to the kernel and not yet reaped
  size_t in_flight_ = 0;     // everything submitted whose `finish` has not returned
  bool stopping_ = false;
  int plugged_ = 0;
  std::thread completion_thread_;
};

}  // namespace kite::storage
