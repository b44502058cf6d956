// What the e2e tests share about the Linux guest: where its builder scripts are, which kernel
// to boot, and whether guest userspace can run on this host.
#pragma once

#include <string>
#include <vector>

#include "testing/guest_kernel.h"
#include "testing/kvm_required.h"

namespace kite::testing {

// guest-firmware/linux of this source tree.
std::string LinuxDir();
// Runs a helper script and returns the last line of its stdout, or "" when it fails.
std::string ScriptOutput(const std::vector<std::string>& argv);
// kite's own guest kernel (testing/guest_kernel.h: $KITE_GUEST_KERNEL, else the cached build);
// "" if none.
std::string FindKernel();
// /dev/kvm is hardware-backed (vmx/svm in the CPU flags): guest userspace runs. On emulated-KVM
// hosts (MACHINE.md) only the guest kernel does.
bool HardwareBackedKvm();

// kite's guest kernel and its test initramfs (build-initramfs.sh, cached): the calling test
// fails (fatally: wrap the call in ASSERT_NO_FATAL_FAILURE) when either is missing.
struct GuestImages {
  std::string kernel;
  std::string initrd;
};
void FindGuestImages(GuestImages* out);

}  // namespace kite::testing

// KVM whose guests run userspace (the nested VM or hardware): else the test is skipped, and
// fails under CI=true.
#define KITE_REQUIRE_GUEST_USERSPACE()                                                   \
  do {                                                                                   \
    KITE_REQUIRE_KVM();                                                                  \
    if (!::kite::testing::HardwareBackedKvm()) {                                         \
      if (::kite::testing::RunningInCi()) {                                              \
        FAIL() << "CI=true: guest userspace must run (nested VM or hardware)";           \
      }                                                                                  \
      GTEST_SKIP() << "guest userspace cannot run on an emulated /dev/kvm (MACHINE.md)"; \
    }                                                                                    \
  } while (0)
