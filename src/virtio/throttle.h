// A device's rate limiter (BAD_INPUTS R1) on its event loop: the token buckets of
// base/rate_limiter.h, a clock, and a timer that wakes the device when a request that had to
// wait may go. Used by virtio-blk (per disk) and virtio-net (per direction); docs/VIRTIO.md
// "Rate limits".
//
// A device asks Admit() before it takes a request; on false it leaves the request where the
// guest (or the backend) has it — a virtio-blk chain goes back to the ring with Queue::Unpop, a
// frame stays in the tap — and the gate arms one timer for the moment the request could go.
// No thread waits and nothing is dropped.
//
// Threads: not thread-safe; the device calls it under its own lock, on its event loop (the
// timer is the loop's). Set() comes from the control socket through a post to the loop.
#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/rate_limiter.h"
#include "base/result.h"

namespace kite::virtio {

// Time for a gate: a monotonic clock and a one-shot timer running on the device's loop.
// Tests pass a fake (throttle_test.cc). One per gate.
class ThrottleTime {
 public:
  virtual ~ThrottleTime() = default;
  virtual uint64_t NowNs() = 0;
  // Runs `fn` on the loop `delay_ns` from now. A new call replaces a pending one (whose `fn`
  // does not run).
  virtual void RunAfter(uint64_t delay_ns, std::function<void()> fn) = 0;
};

// std::chrono::steady_clock and an asio::steady_timer on `loop`.
std::unique_ptr<ThrottleTime> LoopThrottleTime(asio::io_context* loop);

// A gate's limits: one for every request (`total`), and for a disk one each for its reads and
// its writes (QEMU's bps / bps_rd / bps_wr): a read goes when both `total` and `read` let it.
struct ThrottleLimits {
  RateLimitParams total;
  RateLimitParams read;
  RateLimitParams write;
  bool operator==(const ThrottleLimits&) const = default;
};

// What a request is to a gate with per-direction limits.
enum class ThrottleDir { kOther, kRead, kWrite };

// The buckets a gate takes its tokens from: the gate's own, or a throttle group's — QEMU's
// throttling.group: disks that share one set of limits, so that together they get the rate
// (docs/VIRTIO.md "Rate limits"). Thread-safe; the group's members each keep their own timer
// and, when refused, wake when the shared buckets would have their tokens.
class ThrottleBuckets {
 public:
  ThrottleBuckets(const ThrottleLimits& limits, uint64_t now_ns) { Set(limits, now_ns); }

  // New settings, with full buckets.
  void Set(const ThrottleLimits& limits, uint64_t now_ns);
  ThrottleLimits limits() const;
  bool unlimited() const { return unlimited_.load(std::memory_order_relaxed); }
  // A request of `bytes` bytes going `dir`: 0 and its tokens taken from `total` and from its
  // direction's limit, or how long until both have them (nothing taken).
  uint64_t TakeOrWait(uint64_t bytes, ThrottleDir dir, uint64_t now_ns);
  void Charge(uint64_t bytes, uint64_t now_ns);
  void Refund(uint64_t bytes);

 private:
  mutable std::mutex mu_;
  ThrottleLimits limits_;
  RateLimiter total_;
  RateLimiter read_;
  RateLimiter write_;
  std::atomic<bool> unlimited_{true};
};

// The throttle groups of one VM, by name. Thread-safe.
class ThrottleGroups {
 public:
  // The group `name`, made with `limits` when it does not exist yet. An existing group keeps
  // its limits: `limits` must be the same or none (unlimited), else an error naming the group.
  Result<std::shared_ptr<ThrottleBuckets>> Join(const std::string& name,
                                                const ThrottleLimits& limits);
  // The group `name` with `limits` set on it (made when new): block_set_io_throttle.
  std::shared_ptr<ThrottleBuckets> SetLimits(const std::string& name, const ThrottleLimits& limits);

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<ThrottleBuckets>> groups_;
};

class ThrottleGate {
 public:
  explicit ThrottleGate(std::unique_ptr<ThrottleTime> time, const ThrottleLimits& limits = {});
  ThrottleGate(std::unique_ptr<ThrottleTime> time, const RateLimitParams& total)
      : ThrottleGate(std::move(time), ThrottleLimits{total, {}, {}}) {}
  // A member of a throttle group: its tokens come from `group`.
  ThrottleGate(std::unique_ptr<ThrottleTime> time, std::shared_ptr<ThrottleBuckets> group);

  // New settings, with full buckets (a group's: every member's). A pending wake is forgotten
  // (Woken refuses it): the caller retries its waiting requests itself.
  void Set(const ThrottleLimits& limits);
  void Set(const RateLimitParams& total) { Set(ThrottleLimits{total, {}, {}}); }
  // Takes its tokens from `buckets` from now on (a group joined or left); a pending wake is
  // forgotten as with Set.
  void Use(std::shared_ptr<ThrottleBuckets> buckets);
  const std::shared_ptr<ThrottleBuckets>& buckets() const { return buckets_; }
  uint64_t NowNs() { return time_->NowNs(); }

  // A request of `bytes` bytes (one operation) going `dir`: true when it may go (its tokens
  // taken from `total` and from its direction's limit). False: it must wait; `wake(epoch)` runs
  // on the loop when it could go, unless a wake is already pending (one timer per gate).
  bool Admit(uint64_t bytes, ThrottleDir dir, const std::function<void(uint64_t epoch)>& wake);
  bool Admit(uint64_t bytes, const std::function<void(uint64_t epoch)>& wake) {
    return Admit(bytes, ThrottleDir::kOther, wake);
  }
  // Adds `bytes` to what an admitted request cost (known only once it was read: a frame).
  // For gates with a total limit only (a NIC direction).
  void Charge(uint64_t bytes) { buckets_->Charge(bytes, time_->NowNs()); }
  // Gives back what Admit(bytes) took for a request that turned out not to exist (a read of
  // the tap that found no frame). For gates with a total limit only.
  void Refund(uint64_t bytes) { buckets_->Refund(bytes); }
  // A wake arrived: true when it is the pending one (the device then retries its requests).
  bool Woken(uint64_t epoch);
  bool waiting() const { return waiting_; }

  // Requests that had to wait, for the device's counters.
  uint64_t throttled() const { return throttled_; }

 private:
  std::unique_ptr<ThrottleTime> time_;
  std::shared_ptr<ThrottleBuckets> buckets_;
  uint64_t epoch_ = 0;
  bool waiting_ = false;
  uint64_t throttled_ = 0;
};

}  // namespace kite::virtio
