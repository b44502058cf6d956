// kite's embedding API: configure a VM in code, run it, stop it, learn how it ended.
//
//   kite::VmConfig config;
//   config.kernel = "vmlinux";
//   config.cmdline = "console=ttyS0";
//   auto machine = kite::Machine::Create(config);       // validates the configuration
//   if (!machine) { /* (*machine).error().message() */ }
//   if (auto started = (*machine)->Start(); !started) { ... }
//   kite::VmOutcome outcome = (*machine)->Wait();       // blocks until the guest ends
//
// One Machine runs one VM at a time. RequestStop() may be called from any thread (not from a
// signal handler). The `kite` executable is a thin CLI over this API (src/vmm/main.cc).
// Link the CMake target `kite_vmm`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"

namespace kite {

enum class SerialMode { kStdio, kFile, kNone };
enum class OnReboot { kExit, kRestart };

struct VmConfig {
  std::string kernel;  // ELF vmlinux (64-bit or PVH entry) or bzImage
  std::string initrd;  // empty: none
  std::string cmdline = "console=ttyS0 reboot=k panic=1";
  uint32_t cpus = 1;               // 1 .. kMaxCpus
  uint64_t memory = 512ull << 20;  // bytes, a multiple of 4 KiB
  SerialMode serial = SerialMode::kStdio;
  std::string serial_path;  // for SerialMode::kFile
  bool acpi = true;         // ACPI tables; false: MP table, no ACPI
  OnReboot on_reboot = OnReboot::kExit;
  bool stats = false;                 // print exit and device counters at the end (stderr)
  bool host_quirks = true;            // adapt the kernel command line to an emulated KVM host
  std::string cpu_template = "host";  // "host" or "minimal" (see src/vmm/cpuid.h)
};

inline constexpr uint32_t kMaxCpus = 254;
inline constexpr uint64_t kMinMemory = 16ull << 20;
inline constexpr uint64_t kMaxMemory = 1ull << 40;

// Checks ranges and combinations; the message names the setting and what was expected.
Result<void> ValidateVmConfig(const VmConfig& config);

// How a VM ended, and the `kite run` exit status for it.
enum class VmEnd {
  kPowerOff,  // the guest powered off (ACPI S5)            → 0
  kError,     // kite itself failed                          → 1
  kReset,     // the guest reset, with OnReboot::kExit       → 2
  kCrash,     // triple fault, unhandled emulation failure, failed entry, unknown exit → 3
  kStopped,   // RequestStop(): user quit, SIGINT or SIGTERM → 130
};

struct VmOutcome {
  VmEnd end = VmEnd::kError;
  std::string detail;  // for kCrash/kError: reason, RIP and instruction bytes
  int ExitStatus() const;
};

const char* VmEndName(VmEnd end);

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> Create(const VmConfig& config);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Builds the VM (memory, devices, tables, kernel) and starts its vCPUs. Errors: bad kernel
  // file, no /dev/kvm, ... The guest runs until Wait() reports its end.
  Result<void> Start();
  // Blocks until the VM ends. With OnReboot::kRestart a guest reset rebuilds the VM and keeps
  // waiting. The Machine may be started again afterwards.
  VmOutcome Wait();
  // Stops the VM (outcome kStopped). Thread-safe; idempotent.
  void RequestStop();

 private:
  struct Impl;
  explicit Machine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Create + Start + Wait. Setup errors come back as VmEnd::kError with the message.
VmOutcome RunVm(const VmConfig& config);

// "0.1.0"
const char* Version();

}  // namespace kite
