// The seccomp allow-lists as BPF programs, compiled at build time: kite-seccomp-gen
// (seccomp_gen.cc) runs the rules of seccomp_policy.cc through libseccomp once and writes
// seccomp_programs.cc into the build directory. At run time a thread copies its program, puts
// the process id into the tgkill rule and installs it: microseconds, no libseccomp.
#pragma once

#include <linux/filter.h>

#include <cstdint>

#include "base/seccomp.h"

namespace kite::seccomp {

struct Program {
  const sock_filter* code;
  uint16_t length;
  // The instructions whose constant is the process id (the tgkill rule): the generator
  // compiled each list with two different ids and recorded where the programs differ.
  const uint16_t* pid_slots;
  uint16_t pid_slot_count;
};

// kPrograms[mode][kind][inet_sockets]: mode 0 traps (Mode::kKill), 1 logs (Mode::kLog).
extern const Program kPrograms[2][kThreadKindCount][kThreadNeedsCount];

// Syscall names by number (x86-64), for the SIGSYS reporter; nullptr where there is none.
inline constexpr int kSyscallNameCount = 512;
extern const char* const kSyscallNames[kSyscallNameCount];

}  // namespace kite::seccomp
