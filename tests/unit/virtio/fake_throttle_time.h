// A fake clock and timer for the rate limiters (virtio/throttle.h): the test moves time to the
// armed deadline and runs the timer's function itself, so waits are exact and nothing sleeps.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "virtio/throttle.h"

namespace kite::testing {

inline constexpr uint64_t kMs = 1'000'000;

// The device's clock and timer, in the test's hands.
struct FakeClock {
  uint64_t now = 1000 * kMs;
  uint64_t armed_at = 0;  // `now` when the timer was armed
  uint64_t delay = 0;
  int arms = 0;
  std::function<void()> fn;

  // Moves time to the armed deadline and runs the timer's function (on the test thread, which
  // is the harness's loop thread).
  void Fire() {
    ASSERT_TRUE(fn) << "no timer armed";
    now = armed_at + delay;
    auto f = std::move(fn);
    fn = nullptr;
    f();
  }
};

class FakeTime final : public virtio::ThrottleTime {
 public:
  explicit FakeTime(std::shared_ptr<FakeClock> clock) : clock_(std::move(clock)) {}
  uint64_t NowNs() override { return clock_->now; }
  void RunAfter(uint64_t delay_ns, std::function<void()> fn) override {
    clock_->armed_at = clock_->now;
    clock_->delay = delay_ns;
    clock_->fn = std::move(fn);
    ++clock_->arms;
  }

 private:
  std::shared_ptr<FakeClock> clock_;
};

// A factory for BlockOptions/NetOptions::throttle_time (every gate shares the clock; the last
// one armed is in `fn`).
inline std::function<std::unique_ptr<virtio::ThrottleTime>()> FakeTimeFactory(
    std::shared_ptr<FakeClock> clock) {
  return [clock] { return std::make_unique<FakeTime>(clock); };
}

}  // namespace kite::testing
