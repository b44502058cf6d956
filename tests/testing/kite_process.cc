// RunProcess: fork + exec with three pipes, one poll() loop that reads both output streams,
// writes stdin when its trigger appears, and enforces the deadline. The child gets its own
// process group so that a kill reaches anything it started.
#include "testing/kite_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <sstream>

#include "base/unique_fd.h"

namespace kite::testing {
namespace {

using Clock = std::chrono::steady_clock;

struct Pipe {
  UniqueFd read, write;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysErr("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Runs in the child: wire up the pipes and exec. Only async-signal-safe calls.
[[noreturn]] void ExecChild(const std::vector<char*>& argv, Pipe& in, Pipe& out, Pipe& err) {
  ::setpgid(0, 0);
  ::dup2(in.read.get(), STDIN_FILENO);
  ::dup2(out.write.get(), STDOUT_FILENO);
  ::dup2(err.write.get(), STDERR_FILENO);
  ::execv(argv[0], argv.data());
  static const char kMsg[] = "RunProcess: exec failed\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
  ::_exit(127);
}

// Appends what is readable on fd to `to`; false at end of file or on error.
bool Drain(int fd, std::string& to) {
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  if (n > 0) {
    to.append(buf, static_cast<size_t>(n));
    return true;
  }
  return n < 0 && (errno == EINTR || errno == EAGAIN);
}

void KillGroup(pid_t pid) {
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
}

}  // namespace

std::string ProcessResult::Describe() const {
  std::ostringstream s;
  if (exited) s << "exit status " << exit_status;
  if (term_signal != 0) s << "killed by signal " << term_signal;
  if (timed_out) s << " (timed out)";
  if (stopped) s << " (stopped: marker seen)";
  s << " after " << elapsed.count() << " ms\n--- stdout ---\n"
    << out << "\n--- stderr ---\n"
    << err;
  return s.str();
}

namespace {

struct Child {
  pid_t pid = -1;
  UniqueFd in, out, err;  // our ends of the child's stdin, stdout, stderr
};

Result<Child> Spawn(const std::vector<std::string>& args) {
  Pipe in = TRY(MakePipe()), out = TRY(MakePipe()), err = TRY(MakePipe());
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return SysErr("fork");
  if (pid == 0) ExecChild(argv, in, out, err);
  ::setpgid(pid, pid);  // also from the parent: no race with a kill right after
  ::fcntl(in.write.get(), F_SETFL, O_NONBLOCK);
  return Child{pid, std::move(in.write), std::move(out.read), std::move(err.read)};
}

// Reads both output streams and feeds stdin until both streams end, the deadline passes or
// the stop line appears. Returns with out_open/err_open telling which streams are still open.
void Pump(Child& child, const ProcessOptions& options, Clock::time_point deadline,
          ProcessResult& result, bool& out_open, bool& err_open) {
  size_t stdin_written = 0;
  while (out_open || err_open) {
    bool stdin_ready =
        options.stdin_after.empty() || result.out.find(options.stdin_after) != std::string::npos;
    bool want_stdin = stdin_ready && stdin_written < options.stdin_data.size();
    std::array<pollfd, 3> fds = {{{out_open ? child.out.get() : -1, POLLIN, 0},
                                  {err_open ? child.err.get() : -1, POLLIN, 0},
                                  {want_stdin ? child.in.get() : -1, POLLOUT, 0}}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      return;
    }
    int wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 100));
    if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) out_open = Drain(child.out.get(), result.out);
    if (fds[1].revents != 0) err_open = Drain(child.err.get(), result.err);
    if (fds[2].revents & POLLOUT) {
      ssize_t n = ::write(child.in.get(), options.stdin_data.data() + stdin_written,
                          options.stdin_data.size() - stdin_written);
      if (n > 0) stdin_written += static_cast<size_t>(n);
    }
    if (!options.stop_when_stdout_contains.empty() &&
        result.out.find(options.stop_when_stdout_contains) != std::string::npos) {
      result.stopped = true;
      return;
    }
  }
}

}  // namespace

Result<ProcessResult> RunProcess(const ProcessOptions& options) {
  if (options.argv.empty()) return Err("RunProcess: empty argv");
  ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test
  const Clock::time_point start = Clock::now();
  Child child = TRY(Spawn(options.argv));
  if (options.on_spawn) options.on_spawn(child.pid);

  ProcessResult result;
  bool out_open = true, err_open = true;
  Pump(child, options, start + options.timeout, result, out_open, err_open);
  if (result.timed_out || result.stopped) KillGroup(child.pid);
  child.in.Reset();
  int status = 0;
  while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
  }
  // Whatever was still buffered in the pipes after the kill or exit.
  while (out_open && Drain(child.out.get(), result.out)) {
  }
  while (err_open && Drain(child.err.get(), result.err)) {
  }
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  result.exited = WIFEXITED(status);
  if (result.exited) result.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

}  // namespace kite::testing
