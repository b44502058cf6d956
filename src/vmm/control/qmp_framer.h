// QmpFramer: splits the byte stream of a QMP connection into complete top-level JSON texts, the
// way QEMU's JSON streamer does (docs/CONTROL.md "Framing"). It only tracks strings and the
// bracket depth; the JSON itself is parsed afterwards (qmp_protocol.h). Bounded: a message may
// hold at most `max_message` bytes and nest at most `max_depth` levels, and nothing recurses.
//
//   several texts in one chunk, or one text over many 1-byte chunks    → each text once
//   'single-quoted' strings (a QMP extension)                          → rewritten as "..."
//   whitespace between texts                                           → skipped
//   an ASCII control char other than \t \r \n, or 0xFE/0xFF             → error, parser reset
//   nesting deeper than max_depth                                      → error, the rest of
//                                                                        that text is skipped
//   a text reaching max_message bytes                                  → error, failed(): the
//                                                                        caller closes
//
// Threads: one framer per connection, used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kite::qmp {

struct FramerLimits {
  size_t max_message = 1 << 20;  // bytes in one top-level text (BAD_INPUTS.md C3)
  uint32_t max_depth = 64;       // nested objects and arrays (C4)
};

// One result of the framer: a complete JSON text, or (error non-empty) the reason a part of
// the stream was thrown away; error is the QMP "desc" of the reply the client gets for it.
struct Frame {
  std::string text;
  std::string error;
};

class Framer {
 public:
  explicit Framer(FramerLimits limits = {}) : limits_(limits) {}

  // Appends to `out` every frame that `bytes` completes. After failed(), input is ignored.
  void Feed(std::string_view bytes, std::vector<Frame>* out);
  // Part of a text is buffered (or being skipped): the connection is mid-message.
  bool pending() const { return state_ != State::kTop; }
  // A text reached max_message: the stream cannot be resynchronised; close the connection.
  bool failed() const { return failed_; }

 private:
  enum class State { kTop, kBare, kNested, kString, kEscape };

  void Step(char c, std::vector<Frame>* out);
  void StepTop(char c, std::vector<Frame>* out);
  void StepNested(char c, std::vector<Frame>* out);
  void StepString(char c, std::vector<Frame>* out);
  void Append(std::string_view s);
  void Emit(std::vector<Frame>* out);
  void EmitError(std::string error, std::vector<Frame>* out);

  FramerLimits limits_;
  State state_ = State::kTop;
  std::string buffer_;     // the text so far (single quotes rewritten)
  size_t size_ = 0;        // input bytes of the current text, buffered or skipped
  uint32_t depth_ = 0;     // open objects and arrays
  char quote_ = '"';       // the quote that opened the current string
  bool skipping_ = false;  // the current text went too deep: consume it without buffering
  bool failed_ = false;
};

}  // namespace kite::qmp
