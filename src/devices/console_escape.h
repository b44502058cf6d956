// The console's escape sequences, as QEMU's character-device multiplexer has them: the
// escape character is Ctrl-A, then
//   x       quit kite (exit status 130)
//   Ctrl-A  send one literal Ctrl-A to the guest
//   h or ?  print the list of escapes on stderr
// Any other key after Ctrl-A is swallowed together with the Ctrl-A.
//
// A pure state machine (bytes in -> bytes for the guest and flags), fed by the console's
// input thread with whatever read() returned; an escape may be split across reads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kite {

inline constexpr uint8_t kConsoleEscapeChar = 0x01;  // Ctrl-A
inline constexpr const char* kConsoleEscapeHelp =
    "\r\nkite console escapes:\r\n"
    "  Ctrl-A x       quit kite\r\n"
    "  Ctrl-A Ctrl-A  send Ctrl-A to the guest\r\n"
    "  Ctrl-A h       this help\r\n";

struct EscapeResult {
  std::vector<uint8_t> to_guest;
  bool quit = false;  // Ctrl-A x seen; bytes after it were not consumed
  bool help = false;  // Ctrl-A h seen at least once
};

class EscapeFilter {
 public:
  EscapeResult Feed(std::span<const uint8_t> input);
  // True after a Ctrl-A whose command key has not arrived yet.
  bool escape_pending() const { return escape_pending_; }

 private:
  bool escape_pending_ = false;
};

}  // namespace kite
