// FakeSerialSink: a SerialSink for tests that keeps what it takes in memory, and can be
// "stalled" (takes nothing, like a stopped consumer) or limited to a byte budget.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <span>
#include <string>

#include "devices/serial_sink.h"

namespace kite::testing {

class FakeSerialSink : public SerialSink {
 public:
  size_t Write(std::span<const uint8_t> bytes) override {
    std::lock_guard lock(mutex_);
    size_t n = std::min(bytes.size(), budget_);
    budget_ -= n;
    output_.append(reinterpret_cast<const char*>(bytes.data()), n);
    return n;
  }

  // Accepts at most `bytes` more bytes from now on (0: stalled).
  void SetBudget(size_t bytes) {
    std::lock_guard lock(mutex_);
    budget_ = bytes;
  }
  std::string output() const {
    std::lock_guard lock(mutex_);
    return output_;
  }

 private:
  mutable std::mutex mutex_;
  size_t budget_ = std::numeric_limits<size_t>::max();
  std::string output_;
};

}  // namespace kite::testing
