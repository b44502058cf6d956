// See linux_guest.h.
#include "linux_guest.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "testing/kite_process.h"

namespace kite::testing {

std::string LinuxDir() {
  return std::string(KITE_SOURCE_DIR) + "/guest-firmware/linux";
}

std::string ScriptOutput(const std::vector<std::string>& argv) {
  ProcessOptions o;
  o.argv = argv;
  o.timeout = std::chrono::milliseconds(120000);
  Result<ProcessResult> r = RunProcess(o);
  if (!r || r->exit_status != 0) return "";
  std::string out = r->out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.substr(out.rfind('\n') + 1);
}

std::string FindKernel() {
  return FindGuestKernel();
}

bool HardwareBackedKvm() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" vmx") != std::string::npos || line.find(" svm") != std::string::npos;
    }
  }
  return false;
}

void FindGuestImages(GuestImages* out) {
  out->kernel = FindGuestKernel();
  ASSERT_FALSE(out->kernel.empty()) << "kite's guest kernel is not built (guest-kernel.sh)";
  out->initrd = ScriptOutput({"/bin/bash", LinuxDir() + "/build-initramfs.sh"});
  ASSERT_FALSE(out->initrd.empty()) << "build-initramfs.sh failed";
}

}  // namespace kite::testing
