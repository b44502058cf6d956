// Logging: printf-style lines on stderr with a level, plus a rate limiter for anything a guest,
// an image or a client can trigger at will (BAD_INPUTS.md R4: log bytes stay bounded).
//
//   KITE_LOG(Warn, "virtio-blk: bad descriptor %u", index);
//   static RateLimit limit;            // one per call site
//   if (limit.Allow()) KITE_LOG(Warn, "...");
#pragma once

#include <atomic>
#include <cstdint>

namespace kite {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

// Lines below this level are dropped. Default Warn; KITE_LOG=debug|info|warn|error|off
// in the environment or SetLogLevel() changes it.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

void LogLine(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Allows at most `burst` events per `period_ms`; counts what it suppresses. Thread-safe.
class RateLimit {
 public:
  explicit RateLimit(uint32_t burst = 10, uint32_t period_ms = 1000)
      : burst_(burst), period_ms_(period_ms) {}
  bool Allow();
  uint64_t suppressed() const { return suppressed_.load(std::memory_order_relaxed); }

 private:
  const uint32_t burst_;
  const uint32_t period_ms_;
  std::atomic<uint64_t> window_start_ms_{0};
  std::atomic<uint32_t> in_window_{0};
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace kite

#define KITE_LOG(level, ...)                                                 \
  do {                                                                       \
    if (::kite::LogLevel::level >= ::kite::GetLogLevel())                    \
      ::kite::LogLine(::kite::LogLevel::level, __VA_ARGS__);                 \
  } while (0)

// Logs through a per-call-site rate limiter.
#define KITE_LOG_RATELIMITED(level, ...)                                     \
  do {                                                                       \
    static ::kite::RateLimit kite_log_limit_;                                \
    if (::kite::LogLevel::level >= ::kite::GetLogLevel() && kite_log_limit_.Allow()) \
      ::kite::LogLine(::kite::LogLevel::level, __VA_ARGS__);                 \
  } while (0)
