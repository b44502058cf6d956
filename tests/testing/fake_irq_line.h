// FakeIrqLine: an IrqLine for tests that records every level change and pulse, so a test can
// assert both the current level and how often the device touched the line (a device should
// drive its line only on changes). Thread-safe: devices may call it from several threads.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

#include "devices/irq_line.h"

namespace kite::testing {

class FakeIrqLine : public IrqLine {
 public:
  void SetLevel(bool asserted) override {
    std::lock_guard lock(mutex_);
    level_ = asserted;
    levels_.push_back(asserted);
  }
  void Pulse() override {
    std::lock_guard lock(mutex_);
    ++pulses_;
  }

  bool level() const {
    std::lock_guard lock(mutex_);
    return level_;
  }
  // Every SetLevel() call, in order.
  std::vector<bool> levels() const {
    std::lock_guard lock(mutex_);
    return levels_;
  }
  size_t set_level_calls() const {
    std::lock_guard lock(mutex_);
    return levels_.size();
  }
  size_t pulses() const {
    std::lock_guard lock(mutex_);
    return pulses_;
  }
  void Clear() {
    std::lock_guard lock(mutex_);
    levels_.clear();
    pulses_ = 0;
  }

 private:
  mutable std::mutex mutex_;
  bool level_ = false;
  std::vector<bool> levels_;
  size_t pulses_ = 0;
};

}  // namespace kite::testing
