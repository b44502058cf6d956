// Linked into the test programs that run VMs in their own process (kvm_lifecycle_tests): kite's
// threads (vCPUs, event loop, disks, control socket, hotplug, block jobs) run under their
// seccomp filters there too, as in the kite executable; the test's own threads stay unfiltered.
// A call outside a thread's list ends the test program with SIGSYS and names the call. A
// sanitizer build runs without filters, as the kite executable does (seccomp::kSanitizerBuild).
#include <gtest/gtest.h>

#include "base/seccomp.h"

namespace {

class SeccompOn : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!kite::seccomp::kSanitizerBuild) kite::seccomp::SetMode(kite::seccomp::Mode::kKill);
  }
};

const ::testing::Environment* const kSeccompOn = ::testing::AddGlobalTestEnvironment(new SeccompOn);

}  // namespace
