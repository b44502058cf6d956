#include "testing/tool_required.h"

#include <unistd.h>

#include <cstdlib>

namespace kite::testing {
namespace {

// The Debian 12 package that has `program`, for the message.
std::string_view PackageOf(std::string_view program) {
  if (program == "qemu-img" || program == "qemu-io") return "qemu-utils";
  if (program == "qemu-system-x86_64") return "qemu-system-x86";
  if (program == "iasl" || program == "acpiexec") return "acpica-tools";
  return {};
}

}  // namespace

std::string FindTool(std::string_view program) {
  if (program.empty()) return {};
  if (program.find('/') != std::string_view::npos) {
    std::string path(program);
    return ::access(path.c_str(), X_OK) == 0 ? path : std::string();
  }
  const char* env = std::getenv("PATH");
  std::string_view dirs = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = dirs.find(':');
    std::string_view dir = dirs.substr(0, colon);
    std::string path = std::string(dir.empty() ? "." : dir) + "/" + std::string(program);
    if (::access(path.c_str(), X_OK) == 0) return path;
    if (colon == std::string_view::npos) return {};
    dirs.remove_prefix(colon + 1);
  }
}

std::string ToolsUnavailableReason(std::initializer_list<std::string_view> programs) {
  std::string missing;
  for (std::string_view program : programs) {
    if (!FindTool(program).empty()) continue;
    if (!missing.empty()) missing += ", ";
    missing += program;
    if (std::string_view package = PackageOf(program); !package.empty()) {
      missing += " (" + std::string(package) + ")";
    }
  }
  if (missing.empty()) return {};
  return missing + " not found on PATH";
}

bool ToolsOrMarkSkipped(std::initializer_list<std::string_view> programs) {
  std::string reason = ToolsUnavailableReason(programs);
  if (reason.empty()) return true;
  // The macros return from this lambda only: the caller goes on with its other checks.
  [&] {
    if (RunningInCi()) FAIL() << "CI=true but " << reason << ": oracle checks must run in CI";
    GTEST_SKIP() << "skipped the oracle check: " << reason;
  }();
  return false;
}

}  // namespace kite::testing
