// Host quirks: on a host whose KVM runs guest code through its instruction emulator (no
// vmx/svm CPU flag: a guest without nested virtualization, see MACHINE.md), a Linux guest needs
// help on its command line: features the emulator cannot execute are turned off
// (noxsave, clearcpuid=...) because KVM_SET_CPUID2 is ignored there, and calibrations that take
// minutes at emulation speed are skipped. Detection and editing are pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kite {

struct HostQuirks {
  bool emulated_kvm = false;
  std::string reason;  // why, for the message on stderr
};

// Looks at the "flags" line of /proc/cpuinfo text: no vmx and no svm means KVM here cannot use
// hardware virtualization (the usual sign is the "hypervisor" flag without them).
HostQuirks DetectHostQuirks(std::string_view cpuinfo);

// Reads /proc/cpuinfo; a host whose cpuinfo cannot be read is treated as a normal host.
HostQuirks DetectHostQuirksFromProc();

// Items an emulated-KVM host needs on a Linux command line of a guest with `cpus` vCPUs.
std::vector<std::string> EmulatedHostCmdlineItems(uint32_t cpus);

// Appends each item whose key (the part before '=') the command line does not already set.
// Returns the items actually added, in order.
std::vector<std::string> AppendCmdlineItems(std::string& cmdline,
                                            const std::vector<std::string>& items);

}  // namespace kite
