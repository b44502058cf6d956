// Host resources a VM is given (docs/CLI.md "Host resources"): how guest RAM is backed (huge
// pages, preallocation, a shared memfd) and which host CPUs kite's threads run on (vCPU
// pinning, libvirt's emulatorpin). The option parsers are pure; PlaceThreads and PinThisThread
// change the calling thread's CPU affinity.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "kite/kite.h"

namespace kite {

// "2-5,7" → {2,3,4,5,7}: ascending, no duplicates, every CPU below kMaxHostCpu.
inline constexpr uint32_t kMaxHostCpu = 1024;  // CPU_SETSIZE
Result<std::vector<uint32_t>> ParseCpuList(std::string_view text);
// {2,3,4,5,7} → "2-5,7".
std::string FormatCpuList(const std::vector<uint32_t>& cpus);

// --memory SIZE[,hugepages=2M|1G][,prealloc=on|off][,shared=on|off]: sets memory and
// memory_backing.
Result<void> ParseMemoryOption(std::string_view text, VmConfig& config);
// The same text back: "536870912" alone when the backing is the default one.
std::string FormatMemoryOption(const VmConfig& config);

// --cpus N[,pin=LIST]: sets cpus and, with pin=, one host CPU per vCPU (the list must hold
// exactly N CPUs: vCPU i runs on the i-th).
Result<void> ParseCpusOption(std::string_view text, VmConfig& config);

// The range checks ValidateVmConfig makes of the settings above.
Result<void> ValidateHostResources(const VmConfig& config);

// The host CPUs this thread may run on (sched_getaffinity).
Result<std::vector<uint32_t>> AllowedCpus();
Result<void> PinThisThread(const std::vector<uint32_t>& cpus);

// Where each vCPU thread goes: its own list, or (when the emulator is pinned) the CPUs the
// process had before; empty: left as started.
struct ThreadPlacement {
  std::vector<std::vector<uint32_t>> vcpus;
};
// Checks that every CPU the config names is one this process may use, pins the calling thread
// (and so every thread it starts from now on) to emulator_affinity when set, and returns where
// the vCPUs go.
Result<ThreadPlacement> PlaceThreads(const VmConfig& config);

}  // namespace kite
