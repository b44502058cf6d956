#include "serial_session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kite::testing {

using Clock = std::chrono::steady_clock;

SerialSession::SerialSession(const std::vector<std::string>& argv) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    out_ = std::string("SerialSession: pipe2: ") + std::strerror(errno);
    return;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setpgid(0, 0);
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(out[1], STDERR_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  in_ = UniqueFd(in[1]);
  out_fd_ = UniqueFd(out[0]);
  ::fcntl(out_fd_.get(), F_SETFL, O_NONBLOCK);
  if (pid_ < 0) out_ = std::string("SerialSession: fork: ") + std::strerror(errno);
  ::signal(SIGPIPE, SIG_IGN);  // Send after the program ended must not kill the test
}

SerialSession::~SerialSession() {
  if (pid_ > 0 && exit_status_ == -1) {
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool SerialSession::ReadFor(std::chrono::milliseconds wait) {
  if (!out_fd_) return false;
  pollfd p{out_fd_.get(), POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(wait.count()));
  if (n <= 0) return n == 0 || errno == EINTR;
  char buf[4096];
  ssize_t got = ::read(out_fd_.get(), buf, sizeof(buf));
  if (got > 0) {
    out_.append(buf, static_cast<size_t>(got));
    return true;
  }
  return got < 0 && (errno == EINTR || errno == EAGAIN);
}

bool SerialSession::Expect(std::string_view text, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (size_t at = out_.find(text, mark_); at != std::string::npos) {
      mark_ = at + text.size();
      return true;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || !ReadFor(std::min(left, std::chrono::milliseconds(500)))) {
      return false;
    }
  }
}

void SerialSession::Send(std::string_view text) {
  while (!text.empty() && in_) {
    ssize_t n = ::write(in_.get(), text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

bool SerialSession::WaitExit(std::chrono::seconds timeout) {
  if (pid_ <= 0) return false;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      // What it printed last is still in the pipe (its write end closed with it).
      char buf[4096];
      ssize_t got;
      while ((got = ::read(out_fd_.get(), buf, sizeof(buf))) > 0) {
        out_.append(buf, static_cast<size_t>(got));
      }
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -2;
      return WIFEXITED(status);
    }
    ReadFor(std::chrono::milliseconds(200));
  }
  ::kill(-pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  exit_status_ = -2;
  return false;
}

}  // namespace kite::testing
