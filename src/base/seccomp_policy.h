// The allow-list of each kind of thread (seccomp.h), as libseccomp rules. Used at build time
// only: kite-seccomp-gen (seccomp_gen.cc) compiles every list to BPF once, and kite installs
// those programs (seccomp_programs.h), so no thread pays for compiling its filter.
#pragma once

#include <seccomp.h>

#include "base/result.h"
#include "base/seccomp.h"

namespace kite::seccomp {

// Adds to `ctx` (whose default action denies) every call a `kind` thread may make; `pid` is
// the process that threads may signal (tgkill).
Result<void> AddAllowRules(scmp_filter_ctx ctx, ThreadKind kind, ThreadNeeds needs, uint32_t pid);

}  // namespace kite::seccomp
