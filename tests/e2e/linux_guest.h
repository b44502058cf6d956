// What the e2e tests share about the Linux guest: where its builder scripts are, which kernel
// to boot, and whether guest userspace can run on this host.
#pragma once

#include <string>
#include <vector>

#include "testing/guest_kernel.h"

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

}  // namespace kite::testing
