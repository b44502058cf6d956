// seccomp: see seccomp.h. The mechanics (mode, installing a filter, the SIGSYS reporter) live
// here; what each kind of thread may call lives in seccomp_policy.cc, compiled to BPF at build
// time (seccomp_programs.h).
#include "base/seccomp.h"

#include <linux/seccomp.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "base/seccomp_programs.h"

namespace kite::seccomp {
namespace {

std::atomic<Mode> g_mode{Mode::kOff};

// The test hook's kind (KITE_TEST_SECCOMP_VIOLATION), -1 when unset; fired once.
std::atomic<int> g_violate_kind{-1};

thread_local const char* t_kind_name = nullptr;  // set once the thread is confined

// Appends `text` to buf (of size kLine) at *len: async-signal-safe string building.
constexpr size_t kLine = 256;
void Append(char* buf, size_t* len, const char* text) {
  while (*text != '\0' && *len + 1 < kLine) buf[(*len)++] = *text++;
}
void AppendHex(char* buf, size_t* len, unsigned long value) {
  char digits[17];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[value & 0xf];
    value >>= 4;
  } while (value != 0 && n < 16);
  Append(buf, len, "0x");
  while (n > 0 && *len + 1 < kLine) buf[(*len)++] = digits[--n];
}
void AppendNumber(char* buf, size_t* len, long value) {
  char digits[24];
  int n = 0;
  unsigned long v = value < 0 ? 0UL - static_cast<unsigned long>(value) : value;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < 23);
  if (value < 0) Append(buf, len, "-");
  while (n > 0 && *len + 1 < kLine) buf[(*len)++] = digits[--n];
}

// SIGSYS from a filter (SA_RESETHAND: the handler is the default again once we are here, and
// SIGSYS stays blocked until we return). Says who called what, then sends SIGSYS again, which
// the default action turns into the process's death when the handler returns. A jailed kite
// is PID 1 of its namespace (vmm/jail.h), and the kernel drops a signal its init sends itself
// with the default action: there the handler rewinds to the refused call instead, which the
// filter refuses again, now with no handler, and that kills even an init.
void OnSigsys(int, siginfo_t* info, void* context) {
  char line[kLine];
  size_t len = 0;
  char comm[17] = {};
  (void)prctl(PR_GET_NAME, comm);
  int nr = info->si_syscall;
  Append(line, &len, "kite: seccomp: the ");
  Append(line, &len, t_kind_name != nullptr ? t_kind_name : "unconfined");
  Append(line, &len, " thread '");
  Append(line, &len, comm);
  Append(line, &len, "' called ");
  Append(line, &len,
         nr >= 0 && nr < kSyscallNameCount && kSyscallNames[nr] != nullptr ? kSyscallNames[nr]
                                                                           : "syscall");
  Append(line, &len, " (");
  AppendNumber(line, &len, nr);
  // The first three arguments (an ioctl's request, a socket's family, mmap's protection).
  const greg_t* regs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
  Append(line, &len, ", args ");
  AppendHex(line, &len, static_cast<unsigned long>(regs[REG_RDI]));
  Append(line, &len, " ");
  AppendHex(line, &len, static_cast<unsigned long>(regs[REG_RSI]));
  Append(line, &len, " ");
  AppendHex(line, &len, static_cast<unsigned long>(regs[REG_RDX]));
  Append(line, &len,
         "), which its filter does not allow: ending kite with SIGSYS "
         "(--seccomp=log lets it run and logs it instead)\n");
  (void)!::write(STDERR_FILENO, line, len);
  if (::getpid() != 1) {
    ::syscall(SYS_tgkill, ::getpid(), ::gettid(), SIGSYS);
    return;
  }
  // si_call_addr is just past the 2-byte `syscall` instruction; rax held the call's number.
  greg_t* gregs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
  gregs[REG_RIP] = reinterpret_cast<greg_t>(info->si_call_addr) - 2;
  gregs[REG_RAX] = nr;
}

void InstallReporter() {
  // glibc's malloc counts the CPUs (reading /sys/devices/system/cpu/online) the first time a
  // thread needs a new arena, unless the arena limit is set: set it here, to glibc's own
  // default (8 per CPU), so that no thread opens a file behind kite's back.
  mallopt(M_ARENA_MAX, 8 * get_nprocs());
  struct sigaction sa {};
  sa.sa_sigaction = OnSigsys;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSYS, &sa, nullptr);

  if (const char* kind = std::getenv("KITE_TEST_SECCOMP_VIOLATION")) {
    for (int k = 0; k < kThreadKindCount; ++k) {
      if (std::strcmp(kind, KindName(static_cast<ThreadKind>(k))) == 0) g_violate_kind = k;
    }
  }
}

}  // namespace

void SetMode(Mode mode) {
  static std::once_flag reporter;
  if (mode != Mode::kOff) std::call_once(reporter, InstallReporter);
  g_mode.store(mode);
}

Result<Mode> ParseMode(std::string_view text) {
  if (text == "on" || text == "kill") return Mode::kKill;
  if (text == "log") return Mode::kLog;
  if (text == "off") return Mode::kOff;
  return Err("seccomp mode '" + std::string(text) + "' is not one of on, log, off");
}

const char* KindName(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kMain:
      return "main";
    case ThreadKind::kSignal:
      return "signal";
    case ThreadKind::kVcpu:
      return "vcpu";
    case ThreadKind::kEventLoop:
      return "event-loop";
    case ThreadKind::kDiskWorker:
      return "disk-worker";
    case ThreadKind::kUringCompletion:
      return "uring-completion";
    case ThreadKind::kConsoleInput:
      return "console-input";
    case ThreadKind::kConsoleOutput:
      return "console-output";
    case ThreadKind::kApiServer:
      return "api-server";
    case ThreadKind::kApiCommand:
      return "api-command";
    case ThreadKind::kHotplug:
      return "hotplug";
    case ThreadKind::kBlockJob:
      break;
  }
  return "block-job";
}

Result<void> ConfineThread(ThreadKind kind, ThreadNeeds needs) {
  Mode mode = g_mode.load();
  if (mode == Mode::kOff) return {};
  const Program& program =
      kPrograms[mode == Mode::kLog ? 1 : 0][static_cast<int>(kind)][needs.index()];
  std::vector<sock_filter> code(program.code, program.code + program.length);
  for (uint16_t i = 0; i < program.pid_slot_count; ++i) {
    code[program.pid_slots[i]].k = static_cast<uint32_t>(::getpid());
  }
  sock_fprog fprog{program.length, code.data()};
  // No new privileges (required for an unprivileged filter; it only takes privileges away).
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
    int error = errno;
    return Error("seccomp: the kernel refused the " + std::string(KindName(kind)) +
                     " thread's filter: " + std::strerror(error),
                 error);
  }
  t_kind_name = KindName(kind);
  // Threads that block every signal (the event loop, the control socket) still take SIGSYS:
  // blocked, the kernel would kill the process without the reporter's line.
  sigset_t sigsys;
  sigemptyset(&sigsys);
  sigaddset(&sigsys, SIGSYS);
  pthread_sigmask(SIG_UNBLOCK, &sigsys, nullptr);

  int expected = static_cast<int>(kind);
  if (g_violate_kind.load() == expected && g_violate_kind.compare_exchange_strong(expected, -1)) {
    ::syscall(SYS_execve, nullptr, nullptr, nullptr);  // no filter allows execve
  }
  return {};
}

void Confine(ThreadKind kind, ThreadNeeds needs) {
  if (Result<void> confined = ConfineThread(kind, needs); !confined) {
    std::fprintf(stderr, "kite: %s\n", confined.error().message().c_str());
    std::abort();
  }
}

}  // namespace kite::seccomp
