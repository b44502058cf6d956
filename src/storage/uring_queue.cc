// UringQueue: io_uring reads and writes with a completion thread. See uring_queue.h.
#include "storage/uring_queue.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <utility>

#include "base/log.h"
#include "base/seccomp.h"

namespace kite::storage {
namespace {

constexpr size_t kMaxIov = 1024;  // UIO_MAXIOV: a longer request goes in several SQEs
constexpr uint64_t kDirectAlign = 4096;
constexpr int kSubmitRetries = 1000;  // transient io_uring_enter failures (EAGAIN, EBUSY)

}  // namespace

struct UringQueue::Op {
  bool write = false;
  uint64_t offset = 0;     // of the next byte to transfer
  std::vector<iovec> iov;  // the request's buffers; iov[first..] hold what is left
  size_t first = 0;
  DiskCompletion done;

  // Drops `n` transferred bytes from the front (and empty iovecs after them).
  void Consume(size_t n) {
    offset += n;
    while (first < iov.size() && (n > 0 || iov[first].iov_len == 0)) {
      size_t take = std::min(n, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      n -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  void ZeroRest() {
    for (size_t i = first; i < iov.size(); ++i) std::memset(iov[i].iov_base, 0, iov[i].iov_len);
    first = iov.size();
  }
  bool finished() const { return first == iov.size(); }
};

Result<std::unique_ptr<UringQueue>> UringQueue::Create(const Options& options, Finish finish) {
  std::unique_ptr<UringQueue> q(new UringQueue(options, std::move(finish)));
  q->kick_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
  if (!q->kick_fd_) return SysErr("eventfd");
  // COOP_TASKRUN (Linux 5.19): task work (the completion of a request finished on an io-wq
  // worker) waits until the submitting thread next enters the kernel, instead of interrupting
  // it with an IPI, which costs a VM exit when kite itself runs in a VM. The submitter is the
  // completion thread, which enters the kernel to wait anyway. Older kernels refuse the flag.
  int r = io_uring_queue_init(options.entries, &q->ring_, IORING_SETUP_COOP_TASKRUN);
  if (r == -EINVAL) r = io_uring_queue_init(options.entries, &q->ring_, 0);
  if (r < 0) return SysErr("io_uring_queue_init", -r);
  q->ring_ready_ = true;
  q->completion_thread_ = std::thread([q = q.get()] { q->CompletionLoop(); });
  return q;
}

UringQueue::~UringQueue() {
  if (!ring_ready_) return;
  Drain();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    // Nothing is in flight, so the ring has room unless a submit failed and left SQEs in it.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      KickLocked();
      mu_.unlock();
      sched_yield();
      mu_.lock();
      sqe = io_uring_get_sqe(&ring_);
    }
    // user_data 0 tells the completion thread to stop.
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, nullptr);
    KickLocked();
  }
  completion_thread_.join();
  io_uring_queue_exit(&ring_);
}

bool UringQueue::Submit(bool write, uint64_t offset, std::vector<iovec>&& iov,
                        DiskCompletion& done) {
  std::lock_guard lock(mu_);
  size_t held = in_ring_ + waiting_.size() + plugged_ops_.size();
  if (stopping_ || held >= options_.entries + options_.max_queued) return false;
  Op* op = new Op{write, offset, std::move(iov), 0, std::move(done)};
  op->Consume(0);  // skip leading empty iovecs
  ++in_flight_;
  if (plugged_ > 0) {
    plugged_ops_.push_back(op);  // not even in the ring: the completion thread submits it
    return true;
  }
  QueueLocked(op);
  KickLocked();
  return true;
}

void UringQueue::QueueLocked(Op* op) {
  if (in_ring_ >= options_.entries || !waiting_.empty()) {
    waiting_.push_back(op);
  } else {
    PushLocked(op);
  }
}

void UringQueue::KickLocked() {
  if (kick_pending_ || io_uring_sq_ready(&ring_) == 0) return;
  uint64_t one = 1;
  while (::write(kick_fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  kick_pending_ = true;  // an eventfd write cannot fail otherwise short of 2^64 - 1 kicks
}

void UringQueue::ArmKickLocked() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {  // only while the ring is full of SQEs nobody submitted yet
    SubmitLocked();
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_prep_read(sqe, kick_fd_.get(), &kick_value_, sizeof(kick_value_), 0);
  io_uring_sqe_set_data(sqe, &kick_value_);
}

void UringQueue::Plug() {
  std::lock_guard lock(mu_);
  ++plugged_;
}

void UringQueue::Unplug() {
  std::lock_guard lock(mu_);
  if (plugged_ == 0 || --plugged_ > 0) return;
  for (Op* op : plugged_ops_) QueueLocked(op);
  plugged_ops_.clear();
  KickLocked();
}

void UringQueue::Drain() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
}

size_t UringQueue::in_flight() const {
  std::lock_guard lock(mu_);
  return in_flight_;
}

void UringQueue::PushLocked(Op* op) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {  // every SQE is taken until the next successful submit
    waiting_.push_front(op);
    return;
  }
  unsigned count = static_cast<unsigned>(std::min(op->iov.size() - op->first, kMaxIov));
  if (op->write) {
    io_uring_prep_writev(sqe, options_.fd, &op->iov[op->first], count, op->offset);
  } else {
    io_uring_prep_readv(sqe, options_.fd, &op->iov[op->first], count, op->offset);
  }
  io_uring_sqe_set_data(sqe, op);
  ++in_ring_;
}

void UringQueue::SubmitLocked() {
  for (int tries = 0; io_uring_sq_ready(&ring_) > 0; ++tries) {
    int r = io_uring_submit(&ring_);
    if (r > 0) continue;
    if ((r == 0 || r == -EINTR || r == -EAGAIN || r == -EBUSY) && tries < kSubmitRetries) {
      sched_yield();
      continue;
    }
    // The SQEs stay in the ring and go with the next submit (the next request or completion).
    KITE_LOG_RATELIMITED(Warn, "io_uring_submit: %s",
                         r == 0 ? "nothing submitted" : std::strerror(-r));
    return;
  }
}

void UringQueue::RefillLocked() {
  while (!waiting_.empty() && in_ring_ < options_.entries) {
    // The submission ring may be full of SQEs not yet given to the kernel (the kick read, a
    // retry): give them first, or nobody would until the next kick.
    if (io_uring_sq_space_left(&ring_) == 0) SubmitLocked();
    if (io_uring_sq_space_left(&ring_) == 0) break;  // the kernel refuses: retried next time
    Op* op = waiting_.front();
    waiting_.pop_front();
    size_t before = waiting_.size();
    PushLocked(op);
    if (waiting_.size() > before) break;  // no free SQE
  }
  SubmitLocked();
}

bool UringQueue::Advance(Op& op, int res, Result<void>& result) const {
  if (res == -EAGAIN || res == -EINTR) return true;
  if (res < 0) {
    result = SysErr(
        std::string(op.write ? "write" : "read") + " at offset " + std::to_string(op.offset), -res);
    return false;
  }
  if (res == 0) {
    if (op.write) {
      result = Err("write at offset " + std::to_string(op.offset) + ": no progress");
    } else {
      op.ZeroRest();  // end of file: a file shorter than the disk reads as zeros
    }
    return false;
  }
  op.Consume(static_cast<size_t>(res));
  if (op.finished()) return false;
  // O_DIRECT transfers whole blocks, so a short read ending inside one stopped at end of file
  // (and the remainder's offset would be refused as unaligned).
  if (!op.write && options_.direct && op.offset % kDirectAlign != 0) {
    op.ZeroRest();
    return false;
  }
  return true;  // short transfer: the rest goes in a new SQE
}

bool UringQueue::Reap(std::vector<std::pair<Op*, int>>& reaped, bool& kicked) {
  bool stop = false;
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    void* data = io_uring_cqe_get_data(cqe);
    auto* op = static_cast<Op*>(data);
    if (data == &kick_value_) {
      kicked = true;
    } else if (op == nullptr) {
      stop = true;
    } else {
      reaped.emplace_back(op, cqe->res);
    }
  }
  io_uring_cq_advance(&ring_, seen);
  return stop;
}

void UringQueue::CompletionLoop() {
  pthread_setname_np(pthread_self(), "kite-uring");
  seccomp::Confine(seccomp::ThreadKind::kUringCompletion);
  std::vector<std::pair<Op*, int>> reaped;
  std::vector<std::pair<Op*, Result<void>>> finished;
  {
    std::lock_guard lock(mu_);
    ArmKickLocked();
    SubmitLocked();
  }
  while (true) {
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe(&ring_, &cqe);
    if (r == -EINTR) continue;
    if (r < 0) {
      KITE_LOG_RATELIMITED(Warn, "io_uring_wait_cqe: %s", std::strerror(-r));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    reaped.clear();
    finished.clear();
    bool kicked = false;
    bool stop = Reap(reaped, kicked);
    {
      // Ops are touched under mu_ (they were filled in under it in Submit): the kernel orders
      // SQE before CQE, but only the lock makes that visible to ThreadSanitizer.
      std::lock_guard lock(mu_);
      in_ring_ -= static_cast<unsigned>(reaped.size());
      for (auto& [op, res] : reaped) {
        Result<void> result;
        if (Advance(*op, res, result)) {
          PushLocked(op);  // the rest of a short transfer, or a retry
        } else {
          finished.emplace_back(op, std::move(result));
        }
      }
      if (kicked && !stop) {
        kick_pending_ = false;  // a Submit from now on writes the eventfd again
        ArmKickLocked();
      }
      RefillLocked();  // submits everything in the ring: new requests, retries, the kick read
    }
    if (!finished.empty()) {
      Finished batch;
      batch.reserve(finished.size());
      for (auto& [op, result] : finished) {
        batch.emplace_back(std::move(op->done), std::move(result));
        delete op;
      }
      finish_(std::move(batch));
    }
    if (!finished.empty()) {
      std::lock_guard lock(mu_);
      in_flight_ -= finished.size();
      if (in_flight_ == 0) idle_cv_.notify_all();
    }
    if (stop) return;
  }
}

}  // namespace kite::storage
