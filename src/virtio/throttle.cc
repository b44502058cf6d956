// A device's rate limiter on its event loop. See throttle.h.
#include "virtio/throttle.h"

#include <algorithm>
#include <asio/steady_timer.hpp>
#include <chrono>

namespace kite::virtio {
namespace {

uint64_t SteadyNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

class SteadyThrottleTime final : public ThrottleTime {
 public:
  explicit SteadyThrottleTime(asio::io_context* loop) : timer_(*loop) {}

  uint64_t NowNs() override { return SteadyNowNs(); }

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

void ThrottleBuckets::Set(const ThrottleLimits& limits, uint64_t now_ns) {
  std::lock_guard lock(mu_);
  limits_ = limits;
  total_ = RateLimiter(limits.total, now_ns);
  read_ = RateLimiter(limits.read, now_ns);
  write_ = RateLimiter(limits.write, now_ns);
  unlimited_.store(total_.unlimited() && read_.unlimited() && write_.unlimited(),
                   std::memory_order_relaxed);
}

ThrottleLimits ThrottleBuckets::limits() const {
  std::lock_guard lock(mu_);
  return limits_;
}

uint64_t ThrottleBuckets::TakeOrWait(uint64_t bytes, ThrottleDir dir, uint64_t now_ns) {
  std::lock_guard lock(mu_);
  RateLimiter* own = dir == ThrottleDir::kRead    ? &read_
                     : dir == ThrottleDir::kWrite ? &write_
                                                  : nullptr;
  // The request goes when both limits have its tokens; it waits for the later of the two.
  uint64_t wait = std::max(total_.WaitNs(bytes, now_ns), own ? own->WaitNs(bytes, now_ns) : 0);
  if (wait == 0) {
    (void)total_.TryConsume(bytes, now_ns);  // both succeed: WaitNs said the tokens are there
    if (own) (void)own->TryConsume(bytes, now_ns);
  }
  return wait;
}

void ThrottleBuckets::Charge(uint64_t bytes, uint64_t now_ns) {
  std::lock_guard lock(mu_);
  total_.bytes().Charge(bytes, now_ns);
}

void ThrottleBuckets::Refund(uint64_t bytes) {
  std::lock_guard lock(mu_);
  total_.bytes().Refund(bytes);
  total_.ops().Refund(1);
}

Result<std::shared_ptr<ThrottleBuckets>> ThrottleGroups::Join(const std::string& name,
                                                              const ThrottleLimits& limits) {
  std::lock_guard lock(mu_);
  std::shared_ptr<ThrottleBuckets>& group = groups_[name];
  if (!group) {
    group = std::make_shared<ThrottleBuckets>(limits, SteadyNowNs());
  } else if (!(limits == ThrottleLimits{}) && !(limits == group->limits())) {
    return Err("throttle group '" + name +
               "' already has other limits: give the same limits, or none to share the group's");
  }
  return group;
}

std::shared_ptr<ThrottleBuckets> ThrottleGroups::SetLimits(const std::string& name,
                                                           const ThrottleLimits& limits) {
  std::lock_guard lock(mu_);
  std::shared_ptr<ThrottleBuckets>& group = groups_[name];
  if (!group) {
    group = std::make_shared<ThrottleBuckets>(limits, SteadyNowNs());
  } else {
    group->Set(limits, SteadyNowNs());
  }
  return group;
}

ThrottleGate::ThrottleGate(std::unique_ptr<ThrottleTime> time, const ThrottleLimits& limits)
    : time_(std::move(time)), buckets_(std::make_shared<ThrottleBuckets>(limits, time_->NowNs())) {}

ThrottleGate::ThrottleGate(std::unique_ptr<ThrottleTime> time,
                           std::shared_ptr<ThrottleBuckets> group)
    : time_(std::move(time)), buckets_(std::move(group)) {}

void ThrottleGate::Set(const ThrottleLimits& limits) {
  buckets_->Set(limits, time_->NowNs());
  ++epoch_;  // a wake armed for the old settings is refused
  waiting_ = false;
}

void ThrottleGate::Use(std::shared_ptr<ThrottleBuckets> buckets) {
  buckets_ = std::move(buckets);
  ++epoch_;
  waiting_ = false;
}

bool ThrottleGate::Admit(uint64_t bytes, ThrottleDir dir,
                         const std::function<void(uint64_t)>& wake) {
  if (buckets_->unlimited()) return true;
  if (!waiting_) {  // else it queues behind the request the timer is armed for
    uint64_t wait = buckets_->TakeOrWait(bytes, dir, time_->NowNs());
    if (wait == 0) return true;
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
