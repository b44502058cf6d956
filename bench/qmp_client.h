// A minimal blocking QMP client for the benchmarks (B7, B8): one Unix socket, the greeting,
// qmp_capabilities, then one request at a time. Replies and events are told apart by their
// top-level members ("return"/"error" vs "event"), never by key order. Works the same against
// kite and QEMU. Errors print a message and exit(1): these are bench tools.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bench {

[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "qmp client: %s\n", what.c_str());
  std::exit(1);
}

class QmpClient {
 public:
  // Connects to `path` (retrying for up to `wait_ms` while it does not exist or refuses),
  // reads the greeting and negotiates.
  explicit QmpClient(const std::string& path, int wait_ms = 0) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) Die("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    for (int waited = 0;; waited++) {
      fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd_ < 0) Die(std::string("socket: ") + std::strerror(errno));
      if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
      int err = errno;
      close(fd_);
      if (waited >= wait_ms) Die("connect " + path + ": " + std::strerror(err));
      usleep(1000);
    }
    nlohmann::json greeting = ReadMessage();
    if (!greeting.contains("QMP")) Die("no QMP greeting: " + greeting.dump());
    Execute(R"({"execute":"qmp_capabilities"})");
  }
  ~QmpClient() { close(fd_); }
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Sends one request (a JSON text) and returns its reply; events that arrive first are kept
  // in events(). An error reply ends the program unless `allow_error`.
  nlohmann::json Execute(const std::string& request, bool allow_error = false) {
    SendAll(request + "\n");
    for (;;) {
      nlohmann::json msg = ReadMessage();
      if (msg.contains("event")) {
        events_.push_back(std::move(msg));
        continue;
      }
      if (msg.contains("error") && !allow_error) Die(request + " failed: " + msg.dump());
      return msg;
    }
  }

  // Waits for an event named `name` for which `match` holds (kept ones first).
  template <typename Match>
  nlohmann::json WaitEvent(const std::string& name, Match match) {
    for (size_t i = 0; i < events_.size(); i++) {
      if (events_[i]["event"] == name && match(events_[i])) return events_[i];
    }
    for (;;) {
      nlohmann::json msg = ReadMessage();
      if (msg.contains("event") && msg["event"] == name && match(msg)) return msg;
      if (msg.contains("event")) events_.push_back(std::move(msg));
    }
  }

  const std::vector<nlohmann::json>& events() const { return events_; }

 private:
  void SendAll(const std::string& text) {
    for (size_t done = 0; done < text.size();) {
      ssize_t n = send(fd_, text.data() + done, text.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) Die(std::string("send: ") + std::strerror(errno));
      done += static_cast<size_t>(n);
    }
  }

  // One message: the next line (both servers end each object with CRLF).
  nlohmann::json ReadMessage() {
    for (;;) {
      size_t nl = buffer_.find('\n', scanned_);
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        scanned_ = 0;
        nlohmann::json msg = nlohmann::json::parse(line, nullptr, false);
        if (msg.is_discarded() || !msg.is_object()) Die("bad message: " + line);
        return msg;
      }
      scanned_ = buffer_.size();
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) Die(std::string("recv: ") + std::strerror(errno));
      if (n == 0) Die("the server closed the connection");
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  int fd_ = -1;
  std::string buffer_;
  size_t scanned_ = 0;
  std::vector<nlohmann::json> events_;
};

}  // namespace bench
