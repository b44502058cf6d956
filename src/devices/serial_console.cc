// SerialConsole: option parsing, backend set-up and the input thread; see serial_console.h.
#include "devices/serial_console.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/seccomp.h"
#include "devices/console_escape.h"

namespace kite {
namespace {

constexpr size_t kInputChunk = 256;
constexpr int kBackPressurePollMs = 10;

enum class Wait { kReadable, kTimeout, kStop };

// Waits for `fd` (when >= 0) to be readable or `wake_fd` to fire.
Wait WaitFor(int fd, int wake_fd, int timeout_ms) {
  pollfd fds[2] = {{wake_fd, POLLIN, 0}, {fd, POLLIN, 0}};
  int n = ::poll(fds, fd >= 0 ? 2 : 1, timeout_ms);
  if (n < 0) return errno == EINTR ? Wait::kTimeout : Wait::kStop;
  if (fds[0].revents != 0) return Wait::kStop;
  if (n == 0) return Wait::kTimeout;
  return Wait::kReadable;  // POLLIN, or POLLHUP/POLLERR: read() tells which
}

}  // namespace

Result<SerialConfig> ParseSerialOption(std::string_view value) {
  if (value == "stdio") return SerialConfig{SerialBackend::kStdio, {}};
  if (value == "none") return SerialConfig{SerialBackend::kNone, {}};
  constexpr std::string_view kFilePrefix = "file:";
  if (value.substr(0, kFilePrefix.size()) == kFilePrefix) {
    std::string path(value.substr(kFilePrefix.size()));
    if (path.empty()) return Err("--serial file:PATH: the path is empty");
    return SerialConfig{SerialBackend::kFile, std::move(path)};
  }
  return Err("--serial: expected stdio, file:PATH or none, got '" + std::string(value) + "'");
}

Result<std::unique_ptr<SerialConsole>> SerialConsole::Create(SerialConsoleParams params) {
  std::unique_ptr<SerialConsole> console(new SerialConsole(std::move(params)));
  const SerialConfig& config = console->params_.config;
  switch (config.backend) {
    case SerialBackend::kStdio:
      console->sink_ = std::make_unique<FdOutputSink>(console->params_.output_fd);
      break;
    case SerialBackend::kFile: {
      int fd = ::open(config.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) return SysErr("--serial: opening " + config.path);
      console->sink_ = std::make_unique<FdOutputSink>(UniqueFd(fd));
      break;
    }
    case SerialBackend::kNone:
      console->sink_ = std::make_unique<NullSerialSink>();
      break;
  }
  return console;
}

SerialConsole::~SerialConsole() {
  Stop();
}

Result<void> SerialConsole::StartInput(SerialInput* input) {
  if (params_.config.backend != SerialBackend::kStdio || input_thread_.joinable()) return {};
  if (params_.input_fd < 0 || ::fcntl(params_.input_fd, F_GETFD) < 0) {
    return {};  // no stdin (closed): nothing to read
  }
  if (::isatty(params_.input_fd) && ::tcgetpgrp(params_.input_fd) != ::getpgrp()) {
    // A background job reading its terminal would be stopped by SIGTTIN.
    KITE_LOG(Info, "serial console: running in the background, terminal input not read");
    return {};
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return SysErr("serial console: creating a pipe");
  wake_read_.Reset(pipe_fds[0]);
  wake_write_.Reset(pipe_fds[1]);
  auto terminal = RawTerminal::Enter(params_.input_fd);
  if (!terminal) return std::move(terminal).error().Context("serial console");
  terminal_ = std::move(*terminal);
  input_thread_ = std::thread(&SerialConsole::InputLoop, this, input, terminal_->active());
  return {};
}

void SerialConsole::Stop() {
  if (input_thread_.joinable() && input_thread_.get_id() == std::this_thread::get_id()) {
    input_thread_.detach();  // called from on_quit: the loop returns right after
  }
  if (input_thread_.joinable()) {
    char byte = 0;
    while (::write(wake_write_.get(), &byte, 1) < 0 && errno == EINTR) {
    }
    input_thread_.join();
  }
  terminal_.reset();
  if (auto* fd_sink = dynamic_cast<FdOutputSink*>(sink_.get())) {
    fd_sink->Flush(std::chrono::seconds(1));
  }
}

void SerialConsole::InputLoop(SerialInput* input, bool filter_escapes) {
  pthread_setname_np(pthread_self(), "kite-console");
  seccomp::Confine(seccomp::ThreadKind::kConsoleInput);
  EscapeFilter filter;
  uint8_t buffer[kInputChunk];
  while (true) {
    size_t space = input->InputSpace();
    if (space == 0) {
      // Back-pressure: leave the bytes in the kernel until the guest drains its FIFO.
      if (WaitFor(-1, wake_read_.get(), kBackPressurePollMs) == Wait::kStop) return;
      continue;
    }
    Wait wait = WaitFor(params_.input_fd, wake_read_.get(), -1);
    if (wait == Wait::kStop) return;
    if (wait == Wait::kTimeout) continue;
    ssize_t n = ::read(params_.input_fd, buffer, std::min(space, sizeof(buffer)));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      if (n < 0) KITE_LOG(Warn, "serial console: reading input: %s", std::strerror(errno));
      return;  // end of input: the guest keeps running without it
    }
    std::span<const uint8_t> bytes(buffer, static_cast<size_t>(n));
    if (!filter_escapes) {
      input->QueueInput(bytes);
      continue;
    }
    EscapeResult result = filter.Feed(bytes);
    if (result.help) {
      ssize_t ignored = ::write(STDERR_FILENO, kConsoleEscapeHelp, strlen(kConsoleEscapeHelp));
      (void)ignored;
    }
    if (!result.to_guest.empty()) input->QueueInput(result.to_guest);
    if (result.quit) {
      if (params_.on_quit) params_.on_quit();
      return;
    }
  }
}

}  // namespace kite
