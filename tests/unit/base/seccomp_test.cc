// The seccomp allow-lists (base/seccomp_policy.cc), each checked in a forked child that confines
// itself as one kind of thread and makes one call: allowed calls run (or fail with the kernel's
// own errno), calls outside the list end the child with SIGSYS and the reporter's line.
#include "base/seccomp.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>
#include <thread>

namespace kite::seccomp {
namespace {

struct ChildEnd {
  int signal = 0;        // the signal that ended it, or 0
  int exit_status = -1;  // when it exited
  std::string err;       // its stderr
};

// Forks; the child confines itself as `kind` and runs `call`, then exits 0 (the parent learns
// how it ended and what it wrote on stderr).
ChildEnd RunConfined(ThreadKind kind, ThreadNeeds needs, const std::function<void()>& call) {
  int pipe_fds[2];
  EXPECT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDERR_FILENO);
    SetMode(Mode::kKill);
    if (!ConfineThread(kind, needs)) _exit(100);
    call();
    _exit(0);
  }
  ::close(pipe_fds[1]);
  ChildEnd end;
  char buffer[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0) end.err.append(buffer, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) end.signal = WTERMSIG(status);
  if (WIFEXITED(status)) end.exit_status = WEXITSTATUS(status);
  return end;
}

void ExpectAllowed(const ChildEnd& end) {
  EXPECT_EQ(end.signal, 0) << end.err;
  EXPECT_EQ(end.exit_status, 0) << end.err;
}

void ExpectDenied(const ChildEnd& end, const std::string& kind, const std::string& call) {
  EXPECT_EQ(end.signal, SIGSYS) << "exit " << end.exit_status << ": " << end.err;
  EXPECT_NE(end.err.find("kite: seccomp: the " + kind + " thread"), std::string::npos) << end.err;
  EXPECT_NE(end.err.find("called " + call + " ("), std::string::npos) << end.err;
}

// A syscall whose result does not matter (it may fail with EBADF and the like); only whether
// the filter let it through does.
template <typename Fn>
std::function<void()> Call(Fn fn) {
  return [fn] { (void)fn(); };
}

TEST(SeccompMode, Parse) {
  EXPECT_EQ(*ParseMode("on"), Mode::kKill);
  EXPECT_EQ(*ParseMode("kill"), Mode::kKill);
  EXPECT_EQ(*ParseMode("log"), Mode::kLog);
  EXPECT_EQ(*ParseMode("off"), Mode::kOff);
  Result<Mode> bad = ParseMode("strict");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("'strict' is not one of on, log, off"), std::string::npos);
}

TEST(SeccompPolicy, EveryKindBuildsAndLoads) {
  for (int k = 0; k < kThreadKindCount; ++k) {
    for (int needs = 0; needs < kThreadNeedsCount; ++needs) {
      ExpectAllowed(RunConfined(static_cast<ThreadKind>(k), ThreadNeeds::FromIndex(needs), [] {}));
    }
  }
}

TEST(SeccompPolicy, Vcpu_KvmRunAllowed_CreateVmDenied) {
  ExpectAllowed(RunConfined(ThreadKind::kVcpu, {}, Call([] { return ::ioctl(-1, KVM_RUN, 0); })));
  ExpectDenied(
      RunConfined(ThreadKind::kVcpu, {}, Call([] { return ::ioctl(-1, KVM_CREATE_VM, 0); })),
      "vcpu", "ioctl");
}

// Typing at a getty: the console-input thread queues the bytes into the UART and raises its
// receive interrupt itself (found by the Debian e2e test, which logs in on the serial console).
TEST(SeccompPolicy, ConsoleInput_RaisesTheUartInterrupt_NothingElseOnKvm) {
  ExpectAllowed(RunConfined(ThreadKind::kConsoleInput, {},
                            Call([] { return ::ioctl(-1, KVM_IRQ_LINE, 0); })));
  ExpectDenied(RunConfined(ThreadKind::kConsoleInput, {},
                           Call([] { return ::ioctl(-1, KVM_SIGNAL_MSI, 0); })),
               "console-input", "ioctl");
  ExpectDenied(
      RunConfined(ThreadKind::kConsoleInput, {}, Call([] { return ::ioctl(-1, KVM_RUN, 0); })),
      "console-input", "ioctl");
}

TEST(SeccompPolicy, Vcpu_NoFilesNoSocketsNoExecutableMemory) {
  ExpectDenied(
      RunConfined(ThreadKind::kVcpu, {}, Call([] { return ::open("/etc/hostname", O_RDONLY); })),
      "vcpu", "openat");
  ExpectDenied(
      RunConfined(ThreadKind::kVcpu, {}, Call([] { return ::socket(AF_UNIX, SOCK_STREAM, 0); })),
      "vcpu", "socket");
  ExpectDenied(RunConfined(ThreadKind::kVcpu, {}, Call([] {
                             return ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC,
                                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                           })),
               "vcpu", "mmap");
  ExpectAllowed(RunConfined(ThreadKind::kVcpu, {}, Call([] {
                              return ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                            })));
}

TEST(SeccompPolicy, EventLoop_InetSocketsOnlyForAUserNetwork) {
  auto inet = Call([] { return ::socket(AF_INET, SOCK_DGRAM, 0); });
  ExpectDenied(RunConfined(ThreadKind::kEventLoop, {}, inet), "event-loop", "socket");
  ExpectAllowed(RunConfined(ThreadKind::kEventLoop, {.inet_sockets = true}, inet));
  // Never a raw or packet socket, never a netlink one.
  ExpectDenied(RunConfined(ThreadKind::kEventLoop, {.inet_sockets = true},
                           Call([] { return ::socket(AF_PACKET, SOCK_RAW, 0); })),
               "event-loop", "socket");
  // slirp reads resolv.conf; nothing is written or created.
  ExpectAllowed(RunConfined(ThreadKind::kEventLoop, {.inet_sockets = true},
                            Call([] { return ::open("/etc/resolv.conf", O_RDONLY); })));
  ExpectDenied(RunConfined(ThreadKind::kEventLoop, {.inet_sockets = true},
                           Call([] { return ::open("/tmp/kite-x", O_WRONLY | O_CREAT, 0600); })),
               "event-loop", "openat");
}

TEST(SeccompPolicy, EventLoop_UnixSocketsOnlyForVsock) {
  auto unix_socket = Call([] { return ::socket(AF_UNIX, SOCK_STREAM, 0); });
  ExpectDenied(RunConfined(ThreadKind::kEventLoop, {}, unix_socket), "event-loop", "socket");
  ExpectAllowed(RunConfined(ThreadKind::kEventLoop, {.unix_connect = true}, unix_socket));
  ExpectDenied(RunConfined(ThreadKind::kEventLoop, {.unix_connect = true},
                           Call([] { return ::socket(AF_INET, SOCK_STREAM, 0); })),
               "event-loop", "socket");
}

TEST(SeccompPolicy, DiskWorker_ReadsAndWritesOpenFilesOnly) {
  ExpectAllowed(RunConfined(ThreadKind::kDiskWorker, {},
                            Call([] { return ::pread(-1, nullptr, 0, 0) + ::fdatasync(-1); })));
  ExpectDenied(RunConfined(ThreadKind::kDiskWorker, {},
                           Call([] { return ::open("/etc/hostname", O_RDONLY); })),
               "disk-worker", "openat");
}

TEST(SeccompPolicy, ApiCommand_StartsThreadsNeverProcesses) {
  ExpectAllowed(RunConfined(ThreadKind::kApiCommand, {}, [] {
    std::thread t([] {});
    t.join();
  }));
  ExpectDenied(RunConfined(ThreadKind::kApiCommand, {}, Call([] { return ::fork(); })),
               "api-command", "clone");
  ExpectDenied(RunConfined(ThreadKind::kApiCommand, {}, Call([] {
                             return ::syscall(SYS_execve, "/bin/true", nullptr, nullptr);
                           })),
               "api-command", "execve");
  ExpectDenied(RunConfined(ThreadKind::kApiCommand, {},
                           Call([] { return ::socket(AF_NETLINK, SOCK_RAW, 0); })),
               "api-command", "socket");
  ExpectDenied(
      RunConfined(ThreadKind::kApiCommand, {}, Call([] { return ::ioctl(-1, TIOCSTI, nullptr); })),
      "api-command", "ioctl");
}

TEST(SeccompPolicy, Signals_OnlyToThisProcess) {
  ExpectAllowed(RunConfined(ThreadKind::kSignal, {},
                            Call([] { return ::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0); })));
  ExpectDenied(
      RunConfined(ThreadKind::kSignal, {}, Call([] { return ::syscall(SYS_tgkill, 1, 1, 0); })),
      "signal", "tgkill");
  ExpectDenied(RunConfined(ThreadKind::kSignal, {}, Call([] { return ::kill(1, 0); })), "signal",
               "kill");
  ExpectDenied(
      RunConfined(ThreadKind::kSignal, {}, Call([] { return ::prctl(PR_SET_DUMPABLE, 1); })),
      "signal", "prctl");
}

}  // namespace
}  // namespace kite::seccomp
