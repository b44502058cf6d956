// RawTerminal: raw mode with restoration on destructor, exit and fatal signals; see
// raw_terminal.h. The saved termios lives in globals because the atexit and signal handlers
// can reach nothing else.
#include "devices/raw_terminal.h"

#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

namespace kite {
namespace {

struct termios g_saved_termios;
std::atomic<int> g_saved_fd{-1};  // -1: nothing to restore

// Signals whose default action ends the process; SIGINT and SIGTERM are included for when the
// VMM has not installed its own handlers (it replaces ours when it does).
constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT,
                                 SIGQUIT, SIGHUP, SIGINT, SIGTERM};

void OnFatalSignal(int sig) {
  RestoreRawTerminal();
  // SA_RESETHAND restored the default action; raising again (it is unblocked, SA_NODEFER)
  // ends the process the way the signal would have.
  ::raise(sig);
}

void InstallHandlersOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit(RestoreRawTerminal);
    for (int sig : kFatalSignals) {
      struct sigaction old_action {};
      if (::sigaction(sig, nullptr, &old_action) != 0) continue;
      if (old_action.sa_handler != SIG_DFL || (old_action.sa_flags & SA_SIGINFO)) continue;
      struct sigaction action {};
      action.sa_handler = OnFatalSignal;
      sigemptyset(&action.sa_mask);
      action.sa_flags = SA_RESETHAND | SA_NODEFER;
      ::sigaction(sig, &action, nullptr);
    }
  });
}

}  // namespace

void RestoreRawTerminal() {
  int fd = g_saved_fd.exchange(-1);
  if (fd >= 0) ::tcsetattr(fd, TCSANOW, &g_saved_termios);
}

Result<std::unique_ptr<RawTerminal>> RawTerminal::Enter(int fd) {
  if (!::isatty(fd) || ::tcgetpgrp(fd) != ::getpgrp()) {
    return std::unique_ptr<RawTerminal>(new RawTerminal(false));
  }
  if (g_saved_fd.load() >= 0) return Err("the terminal is already in raw mode");
  struct termios saved {};
  if (::tcgetattr(fd, &saved) != 0) return SysErr("tcgetattr on the console terminal");
  struct termios raw = saved;
  ::cfmakeraw(&raw);
  raw.c_oflag |= OPOST;
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  g_saved_termios = saved;
  InstallHandlersOnce();
  g_saved_fd.store(fd);
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) {
    int err = errno;
    g_saved_fd.store(-1);
    return SysErr("putting the console terminal into raw mode", err);
  }
  return std::unique_ptr<RawTerminal>(new RawTerminal(true));
}

RawTerminal::~RawTerminal() {
  if (active_) RestoreRawTerminal();
}

}  // namespace kite
