// SerialConsole: the host side of COM1, selected with `--serial stdio|file:PATH|none`.
//
//   stdio      guest output to stdout; host input from stdin. When stdin is a foreground
//              terminal it is put into raw mode and the Ctrl-A escapes apply (Ctrl-A x quits;
//              see console_escape.h). When stdin is a pipe or a file its bytes go to the guest
//              unfiltered until end of file (so scripts can type into the guest). A terminal
//              of a background job is not read at all (it would stop kite with SIGTTIN).
//   file:PATH  guest output appended to PATH (created 0644); no input.
//   none       guest output discarded; no input.
//
// Output goes through an FdOutputSink (never blocks a vCPU). Input is read by one thread that
// polls stdin and a wake-up pipe (so Stop() ends it promptly) and only reads as many bytes as
// the UART's RX FIFO has room for: a flood on stdin is held back in the kernel's buffers,
// never in kite's memory (R3).
//
// Threads: Create/StartInput/Stop on the main thread; the input thread calls the
// SerialInput and the quit callback.
#pragma once

#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/fd_output_sink.h"
#include "devices/raw_terminal.h"
#include "devices/serial_sink.h"

namespace kite {

enum class SerialBackend { kStdio, kFile, kNone };

struct SerialConfig {
  SerialBackend backend = SerialBackend::kStdio;
  std::string path;  // for kFile
};

// Parses the `--serial` option value: "stdio", "none" or "file:PATH" (PATH not empty).
Result<SerialConfig> ParseSerialOption(std::string_view value);

struct SerialConsoleParams {
  SerialConfig config;
  // Ctrl-A x; called on the input thread, at most once. It should only tell the main thread
  // to shut down (calling Stop() from it does not wait for the input thread).
  std::function<void()> on_quit;
  int input_fd = STDIN_FILENO;  // tests substitute pipes
  int output_fd = STDOUT_FILENO;
};

class SerialConsole {
 public:
  static Result<std::unique_ptr<SerialConsole>> Create(SerialConsoleParams params);
  ~SerialConsole();
  SerialConsole(const SerialConsole&) = delete;
  SerialConsole& operator=(const SerialConsole&) = delete;

  // Where the UART sends guest output. Lives as long as the console.
  SerialSink* sink() { return sink_.get(); }
  // Starts forwarding host input to `input` (stdio only; a no-op for the other backends).
  // `input` must stay valid until Stop().
  Result<void> StartInput(SerialInput* input);
  // Ends the input thread, restores the terminal and drains output (bounded). Idempotent.
  void Stop();

 private:
  explicit SerialConsole(SerialConsoleParams params) : params_(std::move(params)) {}
  void InputLoop(SerialInput* input, bool filter_escapes);

  SerialConsoleParams params_;
  std::unique_ptr<SerialSink> sink_;
  std::unique_ptr<RawTerminal> terminal_;
  UniqueFd wake_read_;
  UniqueFd wake_write_;
  std::thread input_thread_;
};

}  // namespace kite
