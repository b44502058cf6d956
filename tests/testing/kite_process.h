// RunProcess: spawns a program (normally `kite run ...`), feeds its stdin, captures stdout and
// stderr, and waits for it to exit, for a timeout, or for a line on stdout that makes waiting
// any longer pointless (then it is killed at once). Used by the kvm and e2e tests.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"

namespace kite::testing {

struct ProcessOptions {
  std::vector<std::string> argv;  // argv[0] is the program path
  std::chrono::milliseconds timeout{60000};
  // Kill the process (SIGKILL) as soon as stdout contains this (empty: wait for exit).
  std::string stop_when_stdout_contains;
  // Written to stdin once stdout contains `stdin_after` (at once when that is empty). stdin
  // stays open until the process ends.
  std::string stdin_data;
  std::string stdin_after;
  // Called with the child's pid once it runs (e.g. to kill -9 it from another thread).
  std::function<void(int pid)> on_spawn;
};

struct ProcessResult {
  bool exited = false;  // exited normally: exit_status is valid
  int exit_status = -1;
  int term_signal = 0;     // the signal that ended it (also set when we killed it)
  bool timed_out = false;  // killed because the timeout passed
  bool stopped = false;    // killed because stop_when_stdout_contains was seen
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};

  // For test failure messages: status, how it ended, and both streams.
  std::string Describe() const;
};

// Errors only when the process cannot be started (pipe, fork, exec failures).
[[nodiscard]] Result<ProcessResult> RunProcess(const ProcessOptions& options);

}  // namespace kite::testing
