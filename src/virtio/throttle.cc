// A device's rate limiter on its event loop. See throttle.h.
#include "virtio/throttle.h"

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

ThrottleGate::ThrottleGate(std::unique_ptr<ThrottleTime> time, const RateLimitParams& params)
    : time_(std::move(time)) {
  Set(params);
}

void ThrottleGate::Set(const RateLimitParams& params) {
  params_ = params;
  limiter_ = RateLimiter(params, time_->NowNs());
  ++epoch_;  // a wake armed for the old settings is refused
  waiting_ = false;
}

bool ThrottleGate::Admit(uint64_t bytes, const std::function<void(uint64_t)>& wake) {
  if (limiter_.unlimited()) return true;
  uint64_t now = time_->NowNs();
  if (!waiting_ && limiter_.TryConsume(bytes, now)) return true;
  ++throttled_;
  if (!waiting_) {
    waiting_ = true;
    uint64_t epoch = epoch_;
    time_->RunAfter(limiter_.WaitNs(bytes, now), [wake, epoch] { wake(epoch); });
  }
  return false;
}

bool ThrottleGate::Woken(uint64_t epoch) {
  if (epoch != epoch_ || !waiting_) return false;
  waiting_ = false;
  return true;
}

}  // namespace kite::virtio
