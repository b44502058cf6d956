// A QMP client for tests: connects to a kite (or QEMU) control socket, sends requests, reads
// "\r\n"-framed messages, and keeps the events it sees so a test can wait for one.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace kite::testing {

class QmpClient {
 public:
  bool Connect(const std::string& path, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      path.copy(addr.sun_path, path.size());
      if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return true;
      ::close(fd_);
      fd_ = -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  ~QmpClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  void Send(const std::string& text) {
    ASSERT_EQ(::send(fd_, text.data(), text.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(text.size()));
  }
  nlohmann::json Read(std::chrono::milliseconds timeout = std::chrono::milliseconds(20000)) {
    for (;;) {
      size_t end = buffer_.find("\r\n");
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        return nlohmann::json::parse(line, nullptr, false);
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return nlohmann::json();
      char chunk[4096];
      ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return nlohmann::json();
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  // Messages up to and including the reply (events before it kept, in order).
  std::vector<nlohmann::json> Execute(const std::string& text) {
    Send(text);
    std::vector<nlohmann::json> messages;
    for (;;) {
      nlohmann::json message = Read();
      messages.push_back(message);
      if (!message.is_object() || !message.contains("event")) return messages;
    }
  }

  // The greeting read and qmp_capabilities done; false when either failed.
  bool Negotiate() {
    nlohmann::json greeting = Read();
    if (!greeting.contains("QMP")) return false;
    return Run(R"({"execute":"qmp_capabilities"})").contains("return");
  }
  // The reply to `text`; the events before it are kept for WaitEvent.
  nlohmann::json Run(const std::string& text) {
    std::vector<nlohmann::json> messages = Execute(text);
    for (size_t i = 0; i + 1 < messages.size(); ++i) events_.push_back(messages[i]);
    return messages.back();
  }
  // The first event `name` seen (kept from earlier or read now) within `timeout`, taken out of
  // the kept events; null when none came.
  nlohmann::json WaitEvent(const std::string& name, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto it = events_.begin(); it != events_.end(); ++it) {
        if ((*it)["event"] == name) {
          nlohmann::json event = *it;
          events_.erase(it);
          return event;
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return nullptr;
      nlohmann::json message = Read(left);
      if (message.is_null()) return nullptr;
      if (message.contains("event")) events_.push_back(message);
    }
  }

 private:
  int fd_ = -1;
  std::string buffer_;
  std::vector<nlohmann::json> events_;
};

}  // namespace kite::testing
