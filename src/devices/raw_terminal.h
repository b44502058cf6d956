// RawTerminal: puts the controlling terminal (stdin) into raw mode for the serial console and
// guarantees it is restored on every way out: the destructor, exit() (an atexit handler), and
// fatal signals (a handler restores the saved termios, then re-raises the signal with its
// default action). Only one terminal can be raw at a time (the process has one stdin).
//
// Raw mode here is cfmakeraw() with output post-processing kept on (OPOST), as QEMU's stdio
// backend does, so the host's newline handling is unchanged. ISIG is off: Ctrl-C and Ctrl-Z
// go to the guest; the console's escape Ctrl-A x quits kite.
//
// Nothing is changed when the fd is not a terminal, or when kite runs in a background process
// group (tcsetattr would stop it with SIGTTOU).
#pragma once

#include <memory>

#include "base/result.h"

namespace kite {

class RawTerminal {
 public:
  // Enters raw mode on `fd` if it is a foreground terminal; otherwise returns an inactive
  // guard. Errors only when the terminal refuses the new mode.
  static Result<std::unique_ptr<RawTerminal>> Enter(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  bool active() const { return active_; }

 private:
  explicit RawTerminal(bool active) : active_(active) {}
  bool active_;
};

// Restores the terminal saved by RawTerminal::Enter, if any. Async-signal-safe.
void RestoreRawTerminal();

}  // namespace kite
