// Token buckets. See rate_limiter.h.
#include "base/rate_limiter.h"

#include <algorithm>

namespace kite {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;
// Levels are signed (a debt is negative); capacities and debts stay far from the limits.
constexpr uint64_t kMaxTokens = uint64_t{1} << 62;

}  // namespace

TokenBucket::TokenBucket(const BucketParams& params, uint64_t now_ns)
    : rate_(std::min(params.rate, kMaxTokens)),
      capacity_(std::min(params.capacity != 0 ? params.capacity : std::max<uint64_t>(1, rate_ / 10),
                         kMaxTokens)),
      burst_(std::min(params.one_time_burst, kMaxTokens)),
      level_(static_cast<int64_t>(capacity_)),
      last_ns_(now_ns) {
  if (rate_ == 0) capacity_ = burst_ = 0;
}

void TokenBucket::Refill(uint64_t now_ns) {
  if (now_ns <= last_ns_) return;  // the clock is monotonic; never refill backwards
  unsigned __int128 elapsed = now_ns - last_ns_;
  last_ns_ = now_ns;
  if (level_ >= static_cast<int64_t>(capacity_)) {
    fraction_ = 0;
    return;
  }
  unsigned __int128 total = elapsed * rate_ + fraction_;
  unsigned __int128 tokens = total / kNsPerSecond;
  unsigned __int128 room = static_cast<unsigned __int128>(static_cast<int64_t>(capacity_) - level_);
  if (tokens >= room) {
    level_ = static_cast<int64_t>(capacity_);
    fraction_ = 0;
  } else {
    level_ += static_cast<int64_t>(tokens);
    fraction_ = static_cast<uint64_t>(total % kNsPerSecond);
  }
}

int64_t TokenBucket::Needed(uint64_t n) const {
  return static_cast<int64_t>(std::min(n, capacity_));
}

bool TokenBucket::TryConsume(uint64_t n, uint64_t now_ns) {
  if (unlimited()) return true;
  Refill(now_ns);
  uint64_t from_burst = std::min(n, burst_);
  uint64_t rest = std::min(n - from_burst, kMaxTokens);
  if (rest > 0 && level_ < Needed(rest)) return false;
  burst_ -= from_burst;
  level_ -= static_cast<int64_t>(rest);  // below zero only for rest > capacity: a debt
  return true;
}

void TokenBucket::Charge(uint64_t n, uint64_t now_ns) {
  if (unlimited()) return;
  Refill(now_ns);
  uint64_t from_burst = std::min(n, burst_);
  burst_ -= from_burst;
  // The debt is bounded so the level stays far from the int64 limit.
  uint64_t rest = std::min(n - from_burst, kMaxTokens);
  level_ = std::max(level_ - static_cast<int64_t>(rest), -static_cast<int64_t>(kMaxTokens));
}

void TokenBucket::Refund(uint64_t n) {
  if (unlimited()) return;
  uint64_t room = static_cast<uint64_t>(static_cast<int64_t>(capacity_) - level_);
  level_ += static_cast<int64_t>(std::min(n, room));
}

uint64_t TokenBucket::WaitNs(uint64_t n, uint64_t now_ns) {
  if (unlimited()) return 0;
  Refill(now_ns);
  uint64_t rest = n - std::min(n, burst_);
  if (rest == 0) return 0;
  int64_t needed = Needed(std::min(rest, kMaxTokens));
  if (level_ >= needed) return 0;
  // Tokens missing, in token-nanoseconds, less the refill remainder already accrued.
  unsigned __int128 missing =
      static_cast<unsigned __int128>(needed - level_) * kNsPerSecond - fraction_;
  unsigned __int128 ns = (missing + rate_ - 1) / rate_;
  return ns > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(ns);
}

int64_t TokenBucket::Level(uint64_t now_ns) {
  Refill(now_ns);
  return level_;
}

bool RateLimiter::TryConsume(uint64_t bytes, uint64_t now_ns) {
  if (bytes_.WaitNs(bytes, now_ns) != 0 || ops_.WaitNs(1, now_ns) != 0) return false;
  (void)bytes_.TryConsume(bytes, now_ns);  // both succeed: WaitNs said the tokens are there
  (void)ops_.TryConsume(1, now_ns);
  return true;
}

uint64_t RateLimiter::WaitNs(uint64_t bytes, uint64_t now_ns) {
  return std::max(bytes_.WaitNs(bytes, now_ns), ops_.WaitNs(1, now_ns));
}

}  // namespace kite
