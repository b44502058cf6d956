// UringQueue: reads and writes on one file descriptor through io_uring (liburing), the fast path
// of AsyncDisk for raw images (see async_disk.h, docs/STORAGE.md "Async layer").
//
// Requests become IORING_OP_READV/WRITEV SQEs. At most `entries` are in the kernel at once; more
// wait in a userspace queue (bounded by `max_queued`; beyond it Submit refuses). One thread owns
// the ring: the completion thread. Submit only fills SQEs and kicks it (an eventfd it keeps a
// read armed on, written at most once per batch); the completion thread hands the SQEs to the
// kernel, blocks in io_uring_wait_cqe, reaps completions in batches, resubmits the rest of a
// short transfer and -EAGAIN/-EINTR results, zero-fills reads that reach end of file (as
// PreadvFull does), and hands each final result to `finish`. Being the only submitter matters:
// a request the kernel finishes on an io-wq worker (buffered writes on ext4, everything on
// tmpfs) completes through task work on the thread that submitted it, which here is the thread
// already waiting for completions, so they are run in batches with no extra wake-ups; a
// submitting event loop would be interrupted once per such request. The caller checks ranges,
// permissions and O_DIRECT alignment before Submit.
//
// Threads: Submit/Drain/in_flight from any thread (the submission ring and the counters are under
// mu_); io_uring_enter and completions on the completion thread. A request counts as in flight
// until `finish` has returned, so Drain() covers the hand-off (BAD_INPUTS G33).
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
#include "base/unique_fd.h"
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
  // While plugged (nesting count > 0), Submit keeps requests aside; Unplug queues them all and
  // kicks the completion thread once.
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
  // Sets `kicked` when the kick read was one.
  bool Reap(std::vector<std::pair<Op*, int>>& reaped, bool& kicked);
  // Puts `op` into the ring, or into waiting_ when the ring is full. Needs mu_.
  void QueueLocked(Op* op);
  // Asks the completion thread to submit what is in the submission ring. Needs mu_.
  void KickLocked();
  // Queues the read on kick_fd_ that wakes the completion thread. Needs mu_.
  void ArmKickLocked();
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
  std::vector<Op*> plugged_ops_;  // submitted while plugged: queued at Unplug
  UniqueFd kick_fd_;              // eventfd: Submit writes it, the completion thread reads it
  uint64_t kick_value_ = 0;       // the armed read's buffer; its address is the read's user_data
  bool kick_pending_ = false;     // kick_fd_ written and the completion thread not yet woken
  std::thread completion_thread_;
};

}  // namespace kite::storage
