// A device's rate limiter on its event loop. See throttle.h.
#include "virtio/throttle.h"

#include <algorithm>
#include <asio/steady_timer.hpp>
#include <chrono>

namespace kite::virtio {
namespace {

class SteadyThrottleTime final : public ThrottleTime {
 public:
  explicit SteadyThrottleTime(asio::io_context* loop) : timer_(*loop) {}

  uint64_t NowNs() override {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }

  void RunAfter(uint64_t delay_ns, std::function<void()> fn) override {
    // expires_after cancels a pending wait: its handler sees operation_aborted.
    timer_.expires_after(std::chrono::nanoseconds(
        std::min<uint64_t>(delay_ns, std::chrono::nanoseconds::max().count() / 2)));
    timer_.async_wait([fn = std::move(fn)](const asio::error_code& ec) {
      if (!ec) fn();
    });
  }

 private:
  asio::steady_timer timer_;
};

}  // namespace

std::unique_ptr<ThrottleTime> LoopThrottleTime(asio::io_context* loop) {
  return std::make_unique<SteadyThrottleTime>(loop);
}

ThrottleGate::ThrottleGate(std::unique_ptr<ThrottleTime> time, const ThrottleLimits& limits)
    : time_(std::move(time)) {
  Set(limits);
}

void ThrottleGate::Set(const ThrottleLimits& limits) {
  uint64_t now = time_->NowNs();
  total_ = RateLimiter(limits.total, now);
  read_ = RateLimiter(limits.read, now);
  write_ = RateLimiter(limits.write, now);
  unlimited_ = total_.unlimited() && read_.unlimited() && write_.unlimited();
  ++epoch_;  // a wake armed for the old settings is refused
  waiting_ = false;
}

RateLimiter* ThrottleGate::DirLimiter(ThrottleDir dir) {
  switch (dir) {
    case ThrottleDir::kRead:
      return &read_;
    case ThrottleDir::kWrite:
      return &write_;
    case ThrottleDir::kOther:
      break;
  }
  return nullptr;
}

bool ThrottleGate::Admit(uint64_t bytes, ThrottleDir dir,
                         const std::function<void(uint64_t)>& wake) {
  if (unlimited_) return true;
  if (!waiting_) {  // else it queues behind the request the timer is armed for
    uint64_t now = time_->NowNs();
    RateLimiter* own = DirLimiter(dir);
    // The request goes when both limits have its tokens; it waits for the later of the two.
    uint64_t wait = std::max(total_.WaitNs(bytes, now), own ? own->WaitNs(bytes, now) : 0);
    if (wait == 0) {
      (void)total_.TryConsume(bytes, now);  // both succeed: WaitNs said the tokens are there
      if (own) (void)own->TryConsume(bytes, now);
      return true;
    }
    waiting_ = true;
    uint64_t epoch = epoch_;
    time_->RunAfter(wait, [wake, epoch] { wake(epoch); });
  }
  ++throttled_;
  return false;
}

bool ThrottleGate::Woken(uint64_t epoch) {
  if (epoch != epoch_ || !waiting_) return false;
  waiting_ = false;
  return true;
}

}  // namespace kite::virtio
