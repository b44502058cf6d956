// The boot-time marker port; see boot_marker.h.
#include "devices/boot_marker.h"

#include <algorithm>

#include "base/log.h"

namespace kite {

BootMarker::BootMarker(Clock::time_point start, std::function<void(const BootMark&)> on_marker)
    : start_(start), on_marker_(std::move(on_marker)) {}

void BootMarker::Read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void BootMarker::Write(uint64_t, std::span<const uint8_t> data) {
  if (data.empty()) return;
  BootMark mark{data[0], Clock::now() - start_};
  {
    std::lock_guard lock(mutex_);
    ++total_;
    if (marks_.size() < kMaxMarkers) marks_.push_back(mark);
  }
  KITE_LOG_RATELIMITED(Info, "guest boot marker %u at %.3f ms since start", mark.value,
                       std::chrono::duration<double, std::milli>(mark.since_start).count());
  if (on_marker_) on_marker_(mark);
}

std::vector<BootMark> BootMarker::marks() const {
  std::lock_guard lock(mutex_);
  return marks_;
}

uint64_t BootMarker::total_marks() const {
  std::lock_guard lock(mutex_);
  return total_;
}

}  // namespace kite
