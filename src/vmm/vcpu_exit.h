// vCPU exits as values: DecodeExit() turns the shared kvm_run area into a std::variant, and
// DispatchExit() — a free function, driven by unit tests with a hand-filled kvm_run — sends
// port I/O to the PIO bus and MMIO to the MMIO bus, writing read data back into kvm_run.
// Everything else (HLT, shutdown, internal errors, ...) is returned to the vCPU loop.
//
// The decoder checks that PIO data (kvm_run.io.data_offset + size * count) lies inside the
// mapping and that access sizes are ones the buses know; anything else becomes Unknown.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace kite {

class Bus;

namespace exit {

// Port I/O. For string instructions (rep ins/outs) `count` > 1 and `data` holds
// size * count bytes, one access after the other.
struct IoIn {
  uint16_t port = 0;
  uint8_t size = 0;
  uint32_t count = 1;
  std::span<uint8_t> data;
};
struct IoOut {
  uint16_t port = 0;
  uint8_t size = 0;
  uint32_t count = 1;
  std::span<const uint8_t> data;
};
struct MmioRead {
  uint64_t addr = 0;
  std::span<uint8_t> data;  // kvm_run.mmio.data[0 .. len)
};
struct MmioWrite {
  uint64_t addr = 0;
  std::span<const uint8_t> data;
};
struct Hlt {};
// Triple fault (or another shutdown condition): the guest is dead.
struct Shutdown {};
struct InternalError {
  uint32_t suberror = 0;
  std::vector<uint8_t> insn;   // instruction bytes, when KVM provided them
  std::vector<uint64_t> data;  // the raw internal.data words
};
struct FailEntry {
  uint64_t hardware_reason = 0;
  uint32_t cpu = 0;
};
struct SystemEvent {
  uint32_t type = 0;  // KVM_SYSTEM_EVENT_*
};
// KVM_RUN returned because of a signal or immediate_exit (KVM_EXIT_INTR).
struct Interrupted {};
struct Unknown {
  uint32_t reason = 0;
  std::string why;  // set when the exit was malformed rather than unknown
};

}  // namespace exit

using VcpuExit = std::variant<exit::IoIn, exit::IoOut, exit::MmioRead, exit::MmioWrite, exit::Hlt,
                              exit::Shutdown, exit::InternalError, exit::FailEntry,
                              exit::SystemEvent, exit::Interrupted, exit::Unknown>;

// Decodes the exit held in a kvm_run mapping (`run_area` starts with struct kvm_run).
VcpuExit DecodeExit(std::span<uint8_t> run_area);

// A short name for statistics and messages: "io-in", "mmio-write", "shutdown", ...
const char* ExitName(const VcpuExit& exit);
// The same by variant index (for counters kept per index).
const char* ExitKindName(size_t index);
// "KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)", "unknown exit reason 37", ...
std::string DescribeExit(const VcpuExit& exit);
// "cc 0f 1f 00"
std::string FormatBytes(std::span<const uint8_t> bytes);

struct Buses {
  Bus* pio = nullptr;
  Bus* mmio = nullptr;
};

// Decodes the exit and handles I/O on the buses. Returns the decoded exit; for I/O exits the
// caller simply re-enters the guest.
VcpuExit DispatchExit(std::span<uint8_t> run_area, const Buses& buses);

// True for exits DispatchExit() has completed (port I/O and MMIO).
bool IsHandledIo(const VcpuExit& exit);

}  // namespace kite
