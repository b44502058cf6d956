// The console escape state machine; see console_escape.h.
#include "devices/console_escape.h"

namespace kite {

EscapeResult EscapeFilter::Feed(std::span<const uint8_t> input) {
  EscapeResult result;
  result.to_guest.reserve(input.size());
  for (uint8_t byte : input) {
    if (!escape_pending_) {
      if (byte == kConsoleEscapeChar) {
        escape_pending_ = true;
      } else {
        result.to_guest.push_back(byte);
      }
      continue;
    }
    escape_pending_ = false;
    switch (byte) {
      case kConsoleEscapeChar:
        result.to_guest.push_back(byte);
        break;
      case 'x':
      case 'X':
        result.quit = true;
        return result;
      case 'h':
      case '?':
        result.help = true;
        break;
      default:
        break;  // unknown escape: both bytes are swallowed
    }
  }
  return result;
}

}  // namespace kite
