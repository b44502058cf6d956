#include "testing/guest_kernel.h"

#include <chrono>
#include <filesystem>

#include "testing/kite_process.h"

namespace kite::testing {
namespace {

// The last line guest-kernel.sh --no-build prints, or "" when it fails.
std::string RunGuestKernelScript() {
  ProcessOptions options;
  options.argv = {"/bin/bash", std::string(KITE_GUEST_LINUX_DIR) + "/guest-kernel.sh",
                  "--no-build"};
  options.timeout = std::chrono::milliseconds(120000);
  Result<ProcessResult> r = RunProcess(options);
  if (!r || r->exit_status != 0) return "";
  std::string out = r->out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  std::string path = out.substr(out.rfind('\n') + 1);
  return std::filesystem::is_regular_file(path) ? path : "";
}

}  // namespace

std::string FindGuestKernel() {
  static const std::string path = RunGuestKernelScript();
  return path;
}

std::string FindGuestBzImage() {
  std::string vmlinux = FindGuestKernel();
  if (vmlinux.empty()) return "";
  std::filesystem::path bzimage = std::filesystem::path(vmlinux).parent_path() / "bzImage";
  return std::filesystem::is_regular_file(bzimage) ? bzimage.string() : "";
}

}  // namespace kite::testing
