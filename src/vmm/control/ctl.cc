// `kite ctl`: see ctl.h.
#include "vmm/control/ctl.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "vmm/control/qmp_protocol.h"

namespace kite::ctl {
namespace {

using nlohmann::json;

struct Options {
  bool json_output = false;
  bool events = false;
  std::string socket;
  std::string command;
  json arguments = json::object();
};

Result<Options> ParseArgs(std::span<const std::string> args) {
  Options options;
  size_t i = 0;
  for (; i < args.size() && args[i].starts_with("--"); ++i) {
    if (args[i] == "--json") {
      options.json_output = true;
    } else if (args[i] == "--events") {
      options.events = true;
    } else {
      return Err("unknown option " + args[i]);
    }
  }
  if (args.size() - i < 2) return Err("expected SOCKET and COMMAND");
  options.socket = args[i++];
  options.command = args[i++];
  for (; i < args.size(); ++i) {
    size_t eq = args[i].find('=');
    if (eq == std::string::npos || eq == 0) return Err("expected key=value, got '" + args[i] + "'");
    options.arguments[args[i].substr(0, eq)] = ParseValue(args[i].substr(eq + 1));
  }
  return options;
}

// One QMP connection, blocking.
class Client {
 public:
  explicit Client(const Options& options) : options_(options) {}

  Result<void> Connect() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (options_.socket.size() >= sizeof(addr.sun_path)) return Err("socket path too long");
    options_.socket.copy(addr.sun_path, options_.socket.size());
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_) return SysErr("socket");
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return SysErr("connecting to " + options_.socket);
    }
    json greeting = TRY(ReadMessage());
    if (!greeting.contains("QMP")) {
      if (greeting.contains("error")) return Err(greeting["error"].value("desc", "refused"));
      return Err(options_.socket + " did not greet with QMP");
    }
    json reply = TRY(Execute("qmp_capabilities", json::object()));
    if (reply.contains("error")) return Err("negotiation failed: " + reply.dump());
    return {};
  }

  // The reply ({"return": ...} or {"error": ...}); events before it are printed with --events.
  Result<json> Execute(const std::string& command, const json& arguments) {
    json request = {{"execute", command}};
    if (!arguments.empty()) request["arguments"] = arguments;
    std::string line = qmp::ToWire(request) + "\r\n";
    for (size_t sent = 0; sent < line.size();) {
      ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return SysErr("sending to " + options_.socket);
      sent += static_cast<size_t>(n);
    }
    for (;;) {
      json message = TRY(ReadMessage());
      if (!message.contains("event")) return message;
      if (options_.events) std::printf("%s\n", last_line_.c_str());
    }
  }

  const std::string& last_line() const { return last_line_; }

 private:
  Result<json> ReadMessage() {
    for (;;) {
      size_t end = buffer_.find('\n');
      if (end != std::string::npos) {
        last_line_ = buffer_.substr(0, end);
        buffer_.erase(0, end + 1);
        if (!last_line_.empty() && last_line_.back() == '\r') last_line_.pop_back();
        if (last_line_.empty()) continue;
        return TRY(qmp::ParseJson(last_line_));
      }
      char chunk[4096];
      ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return SysErr("reading from " + options_.socket);
      if (n == 0) return Err(options_.socket + " closed the connection");
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  const Options& options_;
  UniqueFd fd_;
  std::string buffer_;
  std::string last_line_;
};

// Prints a reply; returns the exit status.
int Report(const Options& options, const Client& client, const json& reply) {
  if (options.json_output) std::printf("%s\n", client.last_line().c_str());
  if (reply.contains("error")) {
    const json& error = reply["error"];
    std::fprintf(stderr, "kite ctl: %s: %s\n", error.value("class", "?").c_str(),
                 error.value("desc", "?").c_str());
    return 1;
  }
  if (options.json_output) return 0;
  const json& value = reply["return"];
  if (value.is_string()) {
    std::fputs(value.get<std::string>().c_str(), stdout);
  } else if (!(value.is_object() && value.empty())) {
    std::printf("%s\n", value.dump(2, ' ', false, json::error_handler_t::replace).c_str());
  }
  return 0;
}

// `snapshot DIR`: stop if running, save, cont if it was running.
int Snapshot(const Options& options, Client& client) {
  std::string dir = options.arguments.value("path", "");
  std::string path = std::filesystem::absolute(dir).lexically_normal().string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  auto status = client.Execute("query-status", json::object());
  if (!status) return std::fprintf(stderr, "kite ctl: %s\n", status.error().message().c_str()), 1;
  bool was_running = (*status)["return"].value("running", false);
  if (was_running) {
    auto stopped = client.Execute("stop", json::object());
    if (!stopped || stopped->contains("error")) {
      return stopped ? Report(options, client, *stopped) : 1;
    }
  }
  auto saved = client.Execute("x-vm-snapshot-save", {{"path", path}});
  std::string saved_line = client.last_line();
  if (was_running) {
    auto resumed = client.Execute("cont", json::object());
    if (!resumed || resumed->contains("error")) {
      std::fprintf(stderr, "kite ctl: the VM could not be resumed after the snapshot\n");
    }
  }
  if (!saved) return std::fprintf(stderr, "kite ctl: %s\n", saved.error().message().c_str()), 1;
  if (options.json_output) {
    std::printf("%s\n", saved_line.c_str());
  } else if (saved->contains("return")) {
    std::printf("snapshot saved to %s\n", path.c_str());
  }
  if (saved->contains("error")) {
    const json& error = (*saved)["error"];
    std::fprintf(stderr, "kite ctl: %s: %s\n", error.value("class", "?").c_str(),
                 error.value("desc", "?").c_str());
    return 1;
  }
  return 0;
}

}  // namespace

// qmp-shell's rule: numbers, booleans, objects and arrays are JSON; anything else a string.
json ParseValue(const std::string& text) {
  auto parsed = qmp::ParseJson(text);
  if (parsed &&
      (parsed->is_number() || parsed->is_boolean() || parsed->is_object() || parsed->is_array())) {
    return *parsed;
  }
  return text;
}

std::string CtlUsage() {
  return "usage: kite ctl [--json] [--events] SOCKET COMMAND [key=value ...]\n"
         "       kite ctl [--json] SOCKET snapshot DIR\n"
         "  COMMAND is a QMP command (query-status, stop, cont, system_powerdown, quit, ...;\n"
         "  query-commands lists them). Values are JSON numbers, booleans, objects or arrays,\n"
         "  or strings. --json prints the reply line; --events prints events seen meanwhile.\n";
}

int RunCtl(std::span<const std::string> args) {
  std::vector<std::string> words(args.begin(), args.end());
  // `snapshot DIR`: the directory is a positional word; carried as path=DIR.
  auto command_at = std::find_if(words.begin(), words.end(),
                                 [](const std::string& w) { return !w.starts_with("--"); });
  bool snapshot =
      command_at != words.end() && command_at + 1 != words.end() && command_at[1] == "snapshot";
  std::string snapshot_dir;
  if (snapshot) {
    if (command_at + 3 != words.end() || command_at[2].find('=') != std::string::npos) {
      std::fputs(CtlUsage().c_str(), stderr);
      return 2;
    }
    snapshot_dir = command_at[2];
    command_at[2] = "path=" + command_at[2];
  }
  auto options = ParseArgs(words);
  if (!options) {
    std::fprintf(stderr, "kite ctl: %s\n%s", options.error().message().c_str(), CtlUsage().c_str());
    return 2;
  }
  if (snapshot) options->arguments["path"] = snapshot_dir;  // a string, even "123"
  Client client(*options);
  if (auto connected = client.Connect(); !connected) {
    std::fprintf(stderr, "kite ctl: %s\n", connected.error().message().c_str());
    return 1;
  }
  if (snapshot) return Snapshot(*options, client);
  auto reply = client.Execute(options->command, options->arguments);
  if (!reply) {
    std::fprintf(stderr, "kite ctl: %s\n", reply.error().message().c_str());
    return 1;
  }
  return Report(*options, client, *reply);
}

}  // namespace kite::ctl
