// FdOutputSink: a SerialSink that writes to a file descriptor (stdout, or a log file) from its
// own writer thread, so that a vCPU thread never waits for a terminal, a pipe or a disk.
//
// Write() copies into a bounded buffer and returns at once; when the buffer is full the rest
// is refused and the UART counts it as dropped (BAD_INPUTS.md G29). The writer thread blocks
// SIGPIPE for itself, so a closed pipe becomes EPIPE (after which output is discarded)
// rather than killing kite.
//
// On destruction the buffer is drained for at most `drain_timeout`; a writer stuck in write()
// (a stopped terminal, a reader that never reads) is then abandoned: it holds its own state,
// so it can finish or stay blocked without touching freed memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "base/unique_fd.h"
#include "devices/serial_sink.h"

namespace kite {

struct FdOutputStats {
  uint64_t written = 0;  // bytes write() took
  // Bytes Write() refused (buffer full, or the fd failed), plus bytes still buffered when
  // the fd failed.
  uint64_t refused = 0;
};

class FdOutputSink : public SerialSink {
 public:
  static constexpr size_t kDefaultCapacity = 64 * 1024;

  // Writes to `fd`, which stays open (stdout). `capacity` >= 1.
  FdOutputSink(int fd, size_t capacity = kDefaultCapacity,
               std::chrono::milliseconds drain_timeout = std::chrono::seconds(1));
  // Writes to `fd` and closes it when done (a log file).
  FdOutputSink(UniqueFd fd, size_t capacity = kDefaultCapacity,
               std::chrono::milliseconds drain_timeout = std::chrono::seconds(1));
  ~FdOutputSink() override;
  FdOutputSink(const FdOutputSink&) = delete;
  FdOutputSink& operator=(const FdOutputSink&) = delete;

  size_t Write(std::span<const uint8_t> bytes) override;
  // Waits until everything buffered so far was written, or `timeout` passed; true if drained.
  bool Flush(std::chrono::milliseconds timeout);
  FdOutputStats stats() const;

 private:
  struct Shared;
  void Start(int fd, UniqueFd owned, size_t capacity);
  static void WriterLoop(std::shared_ptr<Shared> s);

  std::shared_ptr<Shared> shared_;
  const std::chrono::milliseconds drain_timeout_;
};

}  // namespace kite
