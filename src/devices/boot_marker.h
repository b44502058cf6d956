// The boot-time marker port (layout::kBootMarkerPort, 0x3f0; Firecracker's "boot timer"
// idea): a guest writes a byte there at interesting points of its boot (an init script's
// first line, say) and kite logs "guest boot marker <value> at <ms> ms since start" (at Info
// level, rate-limited) and keeps the first kMaxMarkers marks for the `--stats` output. Only
// the low byte of a wider write counts. Reads return 0.
//
// `on_marker` (optional) sees every write after it is recorded; the VMM uses it for the test
// guests' exit convention (a magic value on the same port).
//
// Threads: vCPU threads write; anyone may read the marks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "devices/bus.h"

namespace kite {

inline constexpr uint64_t kBootMarkerRangeLength = 1;

struct BootMark {
  uint8_t value = 0;
  std::chrono::nanoseconds since_start{0};
};

class BootMarker : public BusDevice {
 public:
  static constexpr size_t kMaxMarkers = 64;
  using Clock = std::chrono::steady_clock;

  explicit BootMarker(Clock::time_point start,
                      std::function<void(const BootMark&)> on_marker = nullptr);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // The recorded marks, oldest first (at most kMaxMarkers), and how many writes there were.
  std::vector<BootMark> marks() const;
  uint64_t total_marks() const;

 private:
  const Clock::time_point start_;
  const std::function<void(const BootMark&)> on_marker_;
  mutable std::mutex mutex_;
  std::vector<BootMark> marks_;
  uint64_t total_ = 0;
};

}  // namespace kite
