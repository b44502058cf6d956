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
#include <cstdint>
#include <functional>
#include <memory>

#include "base/rate_limiter.h"

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

class ThrottleGate {
 public:
  explicit ThrottleGate(std::unique_ptr<ThrottleTime> time, const ThrottleLimits& limits = {});
  ThrottleGate(std::unique_ptr<ThrottleTime> time, const RateLimitParams& total)
      : ThrottleGate(std::move(time), ThrottleLimits{total, {}, {}}) {}

  // New settings, with full buckets. A pending wake is forgotten (Woken refuses it): the caller
  // retries its waiting requests itself.
  void Set(const ThrottleLimits& limits);
  void Set(const RateLimitParams& total) { Set(ThrottleLimits{total, {}, {}}); }

  // A request of `bytes` bytes (one operation) going `dir`: true when it may go (its tokens
  // taken from `total` and from its direction's limit). False: it must wait; `wake(epoch)` runs
  // on the loop when it could go, unless a wake is already pending (one timer per gate).
  bool Admit(uint64_t bytes, ThrottleDir dir, const std::function<void(uint64_t epoch)>& wake);
  bool Admit(uint64_t bytes, const std::function<void(uint64_t epoch)>& wake) {
    return Admit(bytes, ThrottleDir::kOther, wake);
  }
  // Adds `bytes` to what an admitted request cost (known only once it was read: a frame).
  // For gates with a total limit only (a NIC direction).
  void Charge(uint64_t bytes) { total_.bytes().Charge(bytes, time_->NowNs()); }
  // Gives back what Admit(bytes) took for a request that turned out not to exist (a read of
  // the tap that found no frame). For gates with a total limit only.
  void Refund(uint64_t bytes) {
    total_.bytes().Refund(bytes);
    total_.ops().Refund(1);
  }
  // A wake arrived: true when it is the pending one (the device then retries its requests).
  bool Woken(uint64_t epoch);
  bool waiting() const { return waiting_; }

  // Requests that had to wait, for the device's counters.
  uint64_t throttled() const { return throttled_; }

 private:
  // The limiter for `dir`'s own limit, or null.
  RateLimiter* DirLimiter(ThrottleDir dir);

  std::unique_ptr<ThrottleTime> time_;
  RateLimiter total_;
  RateLimiter read_;
  RateLimiter write_;
  bool unlimited_ = true;
  uint64_t epoch_ = 0;
  bool waiting_ = false;
  uint64_t throttled_ = 0;
};

}  // namespace kite::virtio
