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

class ThrottleGate {
 public:
  explicit ThrottleGate(std::unique_ptr<ThrottleTime> time, const RateLimitParams& params = {});

  // New settings, with full buckets. A pending wake is forgotten (Woken refuses it): the caller
  // retries its waiting requests itself.
  void Set(const RateLimitParams& params);
  const RateLimitParams& params() const { return params_; }
  bool unlimited() const { return limiter_.unlimited(); }

  // A request of `bytes` bytes (one operation): true when it may go (its tokens taken). False:
  // it must wait; `wake(epoch)` runs on the loop when it could go, unless a wake is already
  // pending (one timer per gate).
  bool Admit(uint64_t bytes, const std::function<void(uint64_t epoch)>& wake);
  // Adds `bytes` to what an admitted request cost (known only once it was read: a frame).
  void Charge(uint64_t bytes) { limiter_.bytes().Charge(bytes, time_->NowNs()); }
  // Gives back what Admit(bytes) took for a request that turned out not to exist (a read of
  // the tap that found no frame).
  void Refund(uint64_t bytes) {
    limiter_.bytes().Refund(bytes);
    limiter_.ops().Refund(1);
  }
  // A wake arrived: true when it is the pending one (the device then retries its requests).
  bool Woken(uint64_t epoch);
  bool waiting() const { return waiting_; }

  // Requests that had to wait, for the device's counters.
  uint64_t throttled() const { return throttled_; }

 private:
  std::unique_ptr<ThrottleTime> time_;
  RateLimitParams params_;
  RateLimiter limiter_;
  uint64_t epoch_ = 0;
  bool waiting_ = false;
  uint64_t throttled_ = 0;
};

}  // namespace kite::virtio
