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
#include <vector>

#include "base/result.h"

namespace kite {

enum class SerialMode { kStdio, kFile, kNone };
enum class OnReboot { kExit, kRestart };

// A virtio-blk disk (--disk path=FILE,format=raw|qcow2,readonly=on,cache=MODE,serial=ID).
struct DiskConfig {
  std::string path;
  // "raw" or "qcow2". Required for a writable disk: kite never guesses the format of an image
  // the guest can write (BAD_INPUTS.md I1, G22). A read-only disk without one is probed.
  std::string format;
  bool read_only = false;
  std::string cache = "writeback";  // writeback | writethrough | none (O_DIRECT) | unsafe
  std::string serial;               // VIRTIO_BLK_T_GET_ID answer, at most 20 bytes
  uint32_t queues = 1;              // 1..16 virtqueues (multi-queue when > 1)
};

// A virtio-net interface: a tap device (--net tap=NAME[,mac=..]) or the user-mode NAT
// (--net user[,hostfwd=tcp::2222-:22][,mac=..]).
enum class NetBackendKind { kTap, kUser };
struct NetConfig {
  NetBackendKind backend = NetBackendKind::kUser;
  std::string tap;                   // interface name (kTap); created when missing and allowed
  std::string mac;                   // "52:54:00:12:34:56"; empty: generated
  std::vector<std::string> hostfwd;  // kUser: QEMU hostfwd rules, "tcp::2222-:22"
};

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
  // virtio-mmio devices, in this order: disks (vda, vdb, ...), network interfaces, entropy.
  std::vector<DiskConfig> disks;
  std::vector<NetConfig> nets;
  bool rng = true;  // virtio-rng fed from getrandom(2) (--no-rng turns it off)
};

inline constexpr uint32_t kMaxCpus = 254;
inline constexpr uint64_t kMinMemory = 16ull << 20;
inline constexpr uint64_t kMaxMemory = 1ull << 40;
// virtio-mmio devices (disks + nets + rng); each takes one interrupt line of the IOAPIC.
inline constexpr uint32_t kMaxVirtioDevices = 16;

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
