// The oracle-tool policy for tests, beside the /dev/kvm one (kvm_required.h): a test that judges
// kite by another program (qemu-img and qemu-io from qemu-utils, qemu-system-x86_64 from
// qemu-system-x86, iasl and acpiexec from acpica-tools) asks for it first. Where the program is
// missing the test is skipped with a message naming the package, except under CI=true, where it
// fails: CI must never count a test whose oracle did not run as a pass.
//   KITE_REQUIRE_TOOL("qemu-img", "qemu-io");  // skips or fails, and returns from the function
//   if (ToolsOrMarkSkipped({"qemu-img"})) {...} // for an oracle check in the middle of a test:
//                                                // the test's own checks go on, and it ends
//                                                // reported skipped (or failed under CI=true)
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "testing/kvm_required.h"

namespace kite::testing {

// The path of `program` on $PATH (a name with a '/' is taken as a path); empty when there is
// no executable file of that name.
std::string FindTool(std::string_view program);
// Empty when every program can be found; otherwise which are missing and in which packages.
std::string ToolsUnavailableReason(std::initializer_list<std::string_view> programs);
// True when every program can be found. Otherwise marks the running test skipped (failed under
// CI=true) and returns false, so the caller leaves out the check that needs them.
bool ToolsOrMarkSkipped(std::initializer_list<std::string_view> programs);

}  // namespace kite::testing

#define KITE_REQUIRE_TOOL(...)                                                              \
  do {                                                                                      \
    std::string kite_tool_reason_ = ::kite::testing::ToolsUnavailableReason({__VA_ARGS__}); \
    if (!kite_tool_reason_.empty()) {                                                       \
      if (::kite::testing::RunningInCi()) {                                                 \
        FAIL() << "CI=true but " << kite_tool_reason_ << ": oracle tests must run in CI";   \
      }                                                                                     \
      GTEST_SKIP() << "skipped: " << kite_tool_reason_;                                     \
    }                                                                                       \
  } while (0)
