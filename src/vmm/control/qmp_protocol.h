// QMP messages (docs/CONTROL.md, research/CONTROL-PLANE.md §1): parsing a framed text into a
// request with QEMU's checks and error texts, and writing replies, errors, events and the
// greeting as QEMU does: one compact JSON object per line, ending in "\r\n", ASCII only
// (anything else escaped as \uXXXX). Pure functions; any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "base/result.h"
#include "kite/kite.h"

namespace kite::qmp {

// {"execute": name, "arguments"?: object, "id"?: any}
struct Request {
  std::string execute;
  nlohmann::json arguments = nlohmann::json::object();
  std::optional<nlohmann::json> id;
};

// A text that is not a valid request: the error to answer, with the id when it could be read.
struct BadRequest {
  Error error;
  std::optional<nlohmann::json> id;
};

// Parses JSON without exceptions. Duplicate object keys are refused, as QEMU does. The error
// says "JSON parse error, <why>".
Result<nlohmann::json> ParseJson(std::string_view text);

// The checks of QEMU's qmp_dispatch: an object, "execute" a string, "arguments" an object,
// no other member but "id".
std::variant<Request, BadRequest> ParseRequest(std::string_view text);

// The QMP error class for an ErrorKind: "GenericError", "CommandNotFound", ...
const char* ErrorClass(ErrorKind kind);

// Compact, ASCII-only JSON (invalid UTF-8 in strings becomes U+FFFD).
std::string ToWire(const nlohmann::json& value);

// {"return": value, "id"?: id}\r\n
std::string ReturnLine(const nlohmann::json& value, const std::optional<nlohmann::json>& id);
// {"error": {"class": ..., "desc": ...}, "id"?: id}\r\n
std::string ErrorLine(const Error& error, const std::optional<nlohmann::json>& id);
// {"timestamp": {"seconds": s, "microseconds": us}, "event": name, "data"?: data}\r\n
std::string EventLine(const Event& event);
// {"QMP": {"version": <query-version>, "capabilities": []}}\r\n
std::string GreetingLine();

// query-version's result: {"qemu": {"major", "minor", "micro"}, "package": "kite X.Y.Z"}.
nlohmann::json VersionJson();

}  // namespace kite::qmp
