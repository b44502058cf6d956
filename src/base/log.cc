#include "base/log.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace kite {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("KITE_LOG");
  if (env == nullptr) return LogLevel::Warn;
  if (std::strcmp(env, "debug") == 0) return LogLevel::Debug;
  if (std::strcmp(env, "info") == 0) return LogLevel::Info;
  if (std::strcmp(env, "error") == 0) return LogLevel::Error;
  if (std::strcmp(env, "off") == 0) return LogLevel::Off;
  return LogLevel::Warn;
}

std::atomic<int> g_level{static_cast<int>(LevelFromEnv())};

uint64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warning";
    case LogLevel::Error: return "error";
    case LogLevel::Off: break;
  }
  return "";
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

void LogLine(LogLevel level, const char* fmt, ...) {
  char line[1024];
  int n = std::snprintf(line, sizeof(line), "kite: %s: ", LevelName(level));
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n), fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "%s\n", line);  // one call: lines from threads do not interleave
}

bool RateLimit::Allow() {
  uint64_t now = NowMs();
  uint64_t start = window_start_ms_.load(std::memory_order_relaxed);
  if (now - start >= period_ms_ &&
      window_start_ms_.compare_exchange_strong(start, now, std::memory_order_relaxed)) {
    in_window_.store(0, std::memory_order_relaxed);
  }
  if (in_window_.fetch_add(1, std::memory_order_relaxed) < burst_) return true;
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace kite
