// QMP messages: see qmp_protocol.h.
#include "vmm/control/qmp_protocol.h"

#include <cstdio>
#include <set>
#include <vector>

namespace kite::qmp {
namespace {

using nlohmann::json;

// nlohmann's DOM builder with QEMU's duplicate-key check and the parse error kept as text
// (exceptions stay off: parse_error returns false instead of throwing).
class Sax : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  using Base = nlohmann::detail::json_sax_dom_parser<json>;
  explicit Sax(json* root) : Base(*root, false) {}

  bool start_object(std::size_t n) {
    keys_.emplace_back();
    return Base::start_object(n);
  }
  bool end_object() {
    keys_.pop_back();
    return Base::end_object();
  }
  bool key(json::string_t& k) {
    if (keys_.empty() || !keys_.back().insert(k).second) {
      error_ = "duplicate key";
      return false;
    }
    return Base::key(k);
  }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& ex) {
    // "[json.exception.parse_error.101] parse error at line 1, column 13: syntax error ..."
    std::string what = ex.what();
    size_t at = what.find(": ", what.find("column"));
    error_ = at == std::string::npos ? what : what.substr(at + 2);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  std::vector<std::set<std::string>> keys_;  // the keys of each open object
  std::string error_;
};

std::string IdSuffix(const std::optional<json>& id) {
  return id ? ",\"id\":" + ToWire(*id) : std::string();
}

}  // namespace

Result<json> ParseJson(std::string_view text) {
  json root;
  Sax sax(&root);
  bool ok = json::sax_parse(text, &sax);
  if (!ok || root.is_discarded()) {
    return Err("JSON parse error, " + (sax.error().empty() ? "invalid JSON" : sax.error()));
  }
  return root;
}

std::variant<Request, BadRequest> ParseRequest(std::string_view text) {
  auto parsed = ParseJson(text);
  if (!parsed) return BadRequest{std::move(parsed).error(), std::nullopt};
  json& message = *parsed;
  if (!message.is_object()) return BadRequest{Err("QMP input must be a JSON object"), {}};
  Request request;
  if (auto it = message.find("id"); it != message.end()) request.id = *it;
  auto bad = [&](std::string desc) { return BadRequest{Err(std::move(desc)), request.id}; };
  for (auto& [key, value] : message.items()) {
    if (key == "execute") {
      if (!value.is_string()) return bad("QMP input member 'execute' must be a string");
      request.execute = value.get<std::string>();
    } else if (key == "arguments") {
      if (!value.is_object()) return bad("QMP input member 'arguments' must be an object");
      request.arguments = std::move(value);
    } else if (key != "id") {
      return bad("QMP input member '" + key + "' is unexpected");
    }
  }
  if (!message.contains("execute")) return bad("QMP input lacks member 'execute'");
  return request;
}

const char* ErrorClass(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kCommandNotFound:
      return "CommandNotFound";
    case ErrorKind::kDeviceNotFound:
      return "DeviceNotFound";
    case ErrorKind::kDeviceNotActive:
      return "DeviceNotActive";
    case ErrorKind::kKvmMissingCap:
      return "KVMMissingCap";
    case ErrorKind::kGeneric:
      break;
  }
  return "GenericError";
}

std::string ToWire(const json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
}

std::string ReturnLine(const json& value, const std::optional<json>& id) {
  return "{\"return\":" + ToWire(value) + IdSuffix(id) + "}\r\n";
}

std::string ErrorLine(const Error& error, const std::optional<json>& id) {
  json body = {{"class", ErrorClass(error.kind())}, {"desc", error.message()}};
  return "{\"error\":" + ToWire(body) + IdSuffix(id) + "}\r\n";
}

std::string EventLine(const Event& event) {
  // QEMU's member order, which a std::map-backed json would sort.
  std::string line = "{\"timestamp\":{\"seconds\":" + std::to_string(event.seconds) +
                     ",\"microseconds\":" + std::to_string(event.microseconds) +
                     "},\"event\":" + ToWire(event.name);
  if (event.data.is_object()) line += ",\"data\":" + ToWire(event.data);
  return line + "}\r\n";
}

json VersionJson() {
  int major = 0, minor = 0, micro = 0;
  std::sscanf(Version(), "%d.%d.%d", &major, &minor, &micro);
  return {{"qemu", {{"major", major}, {"minor", minor}, {"micro", micro}}},
          {"package", std::string("kite ") + Version()}};
}

std::string GreetingLine() {
  json greeting = {{"QMP", {{"version", VersionJson()}, {"capabilities", json::array()}}}};
  return ToWire(greeting) + "\r\n";
}

}  // namespace kite::qmp
