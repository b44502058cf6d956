// seccomp: one system-call allow-list per kind of thread (docs/SECURITY.md).
//
// Every thread kite starts calls Confine(kind) first thing, before it does its work; the
// kite executable confines its main thread before it builds the VM, so the guest never runs
// an instruction while any kite thread is unfiltered. A thread inherits the filter of the
// thread that started it and adds its own on top (the kernel applies both), so a thread that
// starts others (main, the control socket's command thread) allows what they need at start.
//
// Modes: kKill (the default of the kite executable) — a syscall outside the list raises
// SIGSYS; the handler writes which thread made which call and the process dies of SIGSYS
// (BAD_INPUTS.md F15). kLog — the kernel logs the call (audit, type=1326) and lets it run:
// for research. kOff — no filter (also the state of a process that never calls SetMode, e.g.
// a unit test).
//
//   seccomp::SetMode(seccomp::Mode::kKill);       // once, before any VM thread starts
//   TRY(seccomp::ConfineThread(ThreadKind::kMain)); // on the main thread
//   seccomp::Confine(ThreadKind::kVcpu);          // at the top of a vCPU thread
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace kite::seccomp {

enum class Mode : uint8_t { kOff, kLog, kKill };

// The kinds of thread kite runs (docs/ARCHITECTURE.md "Threads").
enum class ThreadKind : uint8_t {
  kMain,             // builds, restarts and tears down the VM (kite executable only)
  kSignal,           // SIGINT/SIGTERM → stop (kite executable only)
  kVcpu,             // KVM_RUN and the devices' register accesses
  kEventLoop,        // virtqueue notifications, tap/slirp, disk completions, timers
  kDiskWorker,       // blocking reads and writes of a disk image
  kUringCompletion,  // reaps a disk's io_uring completions
  kConsoleInput,     // reads the terminal for the serial port
  kConsoleOutput,    // writes serial output to a slow file or pipe
  kApiServer,        // the control socket: accept, read, write
  kApiCommand,       // control commands that open files: snapshots, device_add, block jobs
  kHotplug,          // finishes device_dels and times them out
  kBlockJob,         // one block job (commit, stream, backup)
};
inline constexpr int kThreadKindCount = 12;

// A sanitizer build (KITE_SANITIZE, KITE_TSAN, KITE_FUZZ): the sanitizer runtime makes system
// calls no allow-list names (LeakSanitizer's ptrace at exit, ThreadSanitizer's background
// thread), so the kite executable runs such a build with the filters off.
#if defined(KITE_SANITIZER_BUILD)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif

// What a thread's filter depends on besides its kind.
struct ThreadNeeds {
  // The event loop of a VM with a `user` network: libslirp opens AF_INET/AF_INET6 sockets
  // for the guest's connections and reads /etc/resolv.conf.
  bool inet_sockets = false;
  // The event loop of a VM with virtio-vsock: a guest's connection to the host makes an
  // AF_UNIX socket and connects it (vsock_host.cc).
  bool unix_connect = false;
  // Which compiled program (seccomp_programs.h): one per combination.
  int index() const { return (inet_sockets ? 1 : 0) | (unix_connect ? 2 : 0); }
  static ThreadNeeds FromIndex(int i) {
    return {.inet_sockets = (i & 1) != 0, .unix_connect = (i & 2) != 0};
  }
};
inline constexpr int kThreadNeedsCount = 4;

// The process-wide mode; set before the first Confine. Kill and Log install the SIGSYS
// reporter once and cap malloc's arenas (see seccomp.cc).
void SetMode(Mode mode);

Result<Mode> ParseMode(std::string_view text);  // "on" (= kill), "kill", "log", "off"
const char* KindName(ThreadKind kind);          // "vcpu", "event-loop", ...

// Installs `kind`'s filter on the calling thread (nothing when the mode is off). Fails only
// when the kernel refuses the filter.
Result<void> ConfineThread(ThreadKind kind, ThreadNeeds needs = {});

// ConfineThread for threads that cannot report an error: a thread that was asked to run
// filtered never runs unfiltered, so a refused filter ends the process with a message.
void Confine(ThreadKind kind, ThreadNeeds needs = {});

// Test hook (F15): with KITE_TEST_SECCOMP_VIOLATION=<kind name> in the environment, the first
// thread of that kind makes a call no filter allows (execve) right after its filter is in.

}  // namespace kite::seccomp
