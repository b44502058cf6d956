// QmpFramer: see qmp_framer.h.
#include "vmm/control/qmp_framer.h"

namespace kite::qmp {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// QMP's parser reset: an ASCII control character other than \t \r \n, or a byte that can
// never occur in UTF-8 (0xFE, 0xFF; qmp-spec.rst "Recovering a broken parser").
bool IsResetByte(char c) {
  auto b = static_cast<unsigned char>(c);
  return (b < 0x20 && !IsSpace(c)) || b >= 0xFE;
}

// Ends a bare top-level token (a number or a literal such as `true`).
bool EndsBareToken(char c) {
  switch (c) {
    case '{':
    case '}':
    case '[':
    case ']':
    case '"':
    case '\'':
    case ',':
    case ':':
      return true;
    default:
      return IsSpace(c);
  }
}

}  // namespace

void Framer::Feed(std::string_view bytes, std::vector<Frame>* out) {
  for (char c : bytes) {
    if (failed_) return;
    Step(c, out);
  }
}

void Framer::Step(char c, std::vector<Frame>* out) {
  if (IsResetByte(c)) {
    // QEMU answers "stray '<char>'"; bytes that are not UTF-8 become U+FFFD.
    std::string shown = static_cast<unsigned char>(c) >= 0xFE ? "\xEF\xBF\xBD" : std::string(1, c);
    EmitError("JSON parse error, stray '" + shown + "'", out);
    return;
  }
  if (state_ != State::kTop || !IsSpace(c)) {
    if (++size_ > limits_.max_message) {
      EmitError("JSON message too long (limit " + std::to_string(limits_.max_message) +
                    " bytes); closing the connection",
                out);
      failed_ = true;
      return;
    }
  }
  switch (state_) {
    case State::kTop:
      StepTop(c, out);
      break;
    case State::kBare:
      if (EndsBareToken(c)) {
        Emit(out);
        StepTop(c, out);
      } else {
        Append(std::string_view(&c, 1));
      }
      break;
    case State::kNested:
      StepNested(c, out);
      break;
    case State::kString:
    case State::kEscape:
      StepString(c, out);
      break;
  }
}

void Framer::StepTop(char c, std::vector<Frame>* out) {
  if (IsSpace(c)) return;
  size_ = 1;
  switch (c) {
    case '{':
    case '[':
      state_ = State::kNested;
      depth_ = 1;
      Append(std::string_view(&c, 1));
      break;
    case '"':
    case '\'':
      state_ = State::kString;
      quote_ = c;
      Append("\"");
      break;
    case '}':
    case ']':
      // A closing bracket with nothing open: a text of its own, which the parser refuses.
      Append(std::string_view(&c, 1));
      Emit(out);
      break;
    default:
      state_ = State::kBare;
      Append(std::string_view(&c, 1));
      break;
  }
}

void Framer::StepNested(char c, std::vector<Frame>* out) {
  switch (c) {
    case '"':
    case '\'':
      state_ = State::kString;
      quote_ = c;
      Append("\"");
      return;
    case '{':
    case '[':
      if (++depth_ > limits_.max_depth && !skipping_) {
        // Reported once; the rest of this text is consumed (depth counted, nothing stored).
        out->push_back({"", "JSON nesting depth limit exceeded (limit " +
                                std::to_string(limits_.max_depth) + ")"});
        skipping_ = true;
        buffer_ = std::string();
      }
      break;
    case '}':
    case ']':
      if (--depth_ == 0) {
        Append(std::string_view(&c, 1));
        Emit(out);
        return;
      }
      break;
    default:
      break;
  }
  Append(std::string_view(&c, 1));
}

void Framer::StepString(char c, std::vector<Frame>* out) {
  if (state_ == State::kEscape) {
    // \' is QMP's escape for a quote in a single-quoted string; JSON has no such escape.
    if (c == '\'') {
      Append("'");
    } else {
      Append("\\");
      Append(std::string_view(&c, 1));
    }
    state_ = State::kString;
    return;
  }
  if (c == '\\') {
    state_ = State::kEscape;
  } else if (c == quote_) {
    Append("\"");
    if (depth_ > 0) {
      state_ = State::kNested;
    } else {
      Emit(out);  // a top-level string: a text of its own
    }
  } else if (c == '"') {
    Append("\\\"");  // a double quote inside a single-quoted string
  } else {
    Append(std::string_view(&c, 1));
  }
}

void Framer::Append(std::string_view s) {
  if (!skipping_) buffer_.append(s);
}

void Framer::Emit(std::vector<Frame>* out) {
  if (!skipping_) out->push_back({std::move(buffer_), ""});
  buffer_ = std::string();
  state_ = State::kTop;
  depth_ = 0;
  size_ = 0;
  skipping_ = false;
}

void Framer::EmitError(std::string error, std::vector<Frame>* out) {
  out->push_back({"", std::move(error)});
  buffer_ = std::string();
  state_ = State::kTop;
  depth_ = 0;
  size_ = 0;
  skipping_ = false;
}

}  // namespace kite::qmp
