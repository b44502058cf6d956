// Token buckets for the device rate limiters (BAD_INPUTS R1). Pure arithmetic on a monotonic
// time in nanoseconds that the caller passes in, so tests drive it with a fake clock.
//
// A bucket (Firecracker's model) is refilled continuously at `rate` tokens per second and holds
// at most `capacity` tokens; it starts full. On top of that, `one_time_burst` tokens are spent
// before the bucket's own and never come back. A request larger than the capacity could never
// fit: it goes when the bucket is full, and the bucket then owes the difference (its level goes
// below zero and the refill pays the debt before anything else goes), so the long-run rate stays
// `rate` and nothing waits forever.
//
// A RateLimiter is a bytes bucket and an operations bucket; a request goes only when both have
// its tokens, and then takes from both. A bucket with rate 0 is unlimited.
#pragma once

#include <cstdint>

namespace kite {

struct BucketParams {
  uint64_t rate = 0;            // tokens per second; 0: unlimited
  uint64_t capacity = 0;        // the most the bucket holds; 0: rate / 10 (at least 1)
  uint64_t one_time_burst = 0;  // spent first, once
  bool operator==(const BucketParams&) const = default;
};

// A limiter's settings: the bytes bucket and the operations bucket.
struct RateLimitParams {
  BucketParams bytes;
  BucketParams ops;
  bool operator==(const RateLimitParams&) const = default;
};

class TokenBucket {
 public:
  TokenBucket() = default;  // unlimited
  TokenBucket(const BucketParams& params, uint64_t now_ns);

  bool unlimited() const { return rate_ == 0; }
  // True (and the tokens taken) when `n` tokens are there now.
  bool TryConsume(uint64_t n, uint64_t now_ns);
  // Takes `n` tokens whether they are there or not (a debt the refill pays first): for a cost
  // known only after the fact, such as a received frame's length.
  void Charge(uint64_t n, uint64_t now_ns);
  // Gives back `n` tokens taken for something that did not happen (never above the capacity).
  void Refund(uint64_t n);
  // How long from `now_ns` until TryConsume(n) succeeds (0: now). Unlimited: 0.
  uint64_t WaitNs(uint64_t n, uint64_t now_ns);

  // For tests and queries: the level after refilling to `now_ns` (negative: a debt).
  int64_t Level(uint64_t now_ns);
  uint64_t one_time_burst() const { return burst_; }
  uint64_t capacity() const { return capacity_; }

 private:
  void Refill(uint64_t now_ns);
  // The level a request of `n` needs before it may go (capped at the capacity: see above).
  int64_t Needed(uint64_t n) const;

  uint64_t rate_ = 0;
  uint64_t capacity_ = 0;
  uint64_t burst_ = 0;
  int64_t level_ = 0;
  // Refill remainder in token-nanoseconds (< 1e9): no rounding is lost between refills.
  uint64_t fraction_ = 0;
  uint64_t last_ns_ = 0;
};

class RateLimiter {
 public:
  RateLimiter() = default;  // unlimited
  RateLimiter(const BucketParams& bytes, const BucketParams& ops, uint64_t now_ns)
      : bytes_(bytes, now_ns), ops_(ops, now_ns) {}
  RateLimiter(const RateLimitParams& params, uint64_t now_ns)
      : RateLimiter(params.bytes, params.ops, now_ns) {}

  bool unlimited() const { return bytes_.unlimited() && ops_.unlimited(); }
  // A request of `bytes` bytes and one operation: true and taken from both buckets, or false
  // and nothing taken.
  bool TryConsume(uint64_t bytes, uint64_t now_ns);
  // How long until TryConsume(bytes) succeeds.
  uint64_t WaitNs(uint64_t bytes, uint64_t now_ns);

  TokenBucket& bytes() { return bytes_; }
  TokenBucket& ops() { return ops_; }

 private:
  TokenBucket bytes_;
  TokenBucket ops_;
};

}  // namespace kite
