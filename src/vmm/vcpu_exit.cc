// Decoding kvm_run exits into VcpuExit values and dispatching I/O to the buses. See vcpu_exit.h.
#include "vmm/vcpu_exit.h"

#include <linux/kvm.h>

#include <algorithm>
#include <cstdio>

#include "base/units.h"
#include "devices/bus.h"

namespace kite {
namespace {

bool ValidIoSize(uint8_t size) {
  return size == 1 || size == 2 || size == 4;
}

VcpuExit DecodeIo(std::span<uint8_t> run_area, const kvm_run& run) {
  const auto& io = run.io;
  if (!ValidIoSize(io.size) || io.count == 0) {
    return exit::Unknown{KVM_EXIT_IO, "port I/O exit with size " + std::to_string(io.size) +
                                          " count " + std::to_string(io.count)};
  }
  uint64_t len = uint64_t{io.size} * io.count;
  if (io.data_offset > run_area.size() || len > run_area.size() - io.data_offset) {
    return exit::Unknown{KVM_EXIT_IO, "port I/O data outside the kvm_run mapping"};
  }
  std::span<uint8_t> data = run_area.subspan(io.data_offset, len);
  if (io.direction == KVM_EXIT_IO_IN) return exit::IoIn{io.port, io.size, io.count, data};
  return exit::IoOut{io.port, io.size, io.count, data};
}

VcpuExit DecodeMmio(kvm_run& run) {
  auto& mmio = run.mmio;
  if (mmio.len == 0 || mmio.len > sizeof(mmio.data)) {
    return exit::Unknown{KVM_EXIT_MMIO, "MMIO exit with length " + std::to_string(mmio.len)};
  }
  std::span<uint8_t> data(mmio.data, mmio.len);
  if (mmio.is_write) return exit::MmioWrite{mmio.phys_addr, data};
  return exit::MmioRead{mmio.phys_addr, data};
}

VcpuExit DecodeInternalError(const kvm_run& run) {
  exit::InternalError error;
  error.suberror = run.internal.suberror;
  uint32_t ndata = std::min<uint32_t>(run.internal.ndata, 16);
  error.data.assign(run.internal.data, run.internal.data + ndata);
  const auto& emu = run.emulation_failure;
  // Instruction bytes: flags word (data[0]) bit 0, then size and bytes (data[1], data[2]).
  if (emu.suberror == KVM_INTERNAL_ERROR_EMULATION && ndata >= 3 &&
      (emu.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0) {
    size_t size = std::min<size_t>(emu.insn_size, sizeof(emu.insn_bytes));
    error.insn.assign(emu.insn_bytes, emu.insn_bytes + size);
  }
  return error;
}

}  // namespace

VcpuExit DecodeExit(std::span<uint8_t> run_area) {
  if (run_area.size() < sizeof(kvm_run)) {
    return exit::Unknown{0, "kvm_run mapping smaller than struct kvm_run"};
  }
  auto& run = *reinterpret_cast<kvm_run*>(run_area.data());
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      return DecodeIo(run_area, run);
    case KVM_EXIT_MMIO:
      return DecodeMmio(run);
    case KVM_EXIT_HLT:
      return exit::Hlt{};
    case KVM_EXIT_SHUTDOWN:
      return exit::Shutdown{};
    case KVM_EXIT_INTERNAL_ERROR:
      return DecodeInternalError(run);
    case KVM_EXIT_FAIL_ENTRY:
      return exit::FailEntry{run.fail_entry.hardware_entry_failure_reason, run.fail_entry.cpu};
    case KVM_EXIT_SYSTEM_EVENT:
      return exit::SystemEvent{run.system_event.type};
    case KVM_EXIT_INTR:
      return exit::Interrupted{};
    default:
      return exit::Unknown{run.exit_reason, ""};
  }
}

const char* ExitKindName(size_t index) {
  static constexpr const char* kNames[] = {
      "io-in",          "io-out",     "mmio-read",    "mmio-write",  "hlt",     "shutdown",
      "internal-error", "fail-entry", "system-event", "interrupted", "unknown",
  };
  static_assert(std::size(kNames) == std::variant_size_v<VcpuExit>);
  return index < std::size(kNames) ? kNames[index] : "?";
}

const char* ExitName(const VcpuExit& exit) {
  return ExitKindName(exit.index());
}

std::string FormatBytes(std::span<const uint8_t> bytes) {
  std::string out;
  char buf[4];
  for (uint8_t b : bytes) {
    std::snprintf(buf, sizeof(buf), out.empty() ? "%02x" : " %02x", b);
    out += buf;
  }
  return out;
}

std::string DescribeExit(const VcpuExit& exit) {
  if (const auto* e = std::get_if<exit::InternalError>(&exit)) {
    std::string s = "KVM_EXIT_INTERNAL_ERROR suberror " + std::to_string(e->suberror);
    if (e->suberror == KVM_INTERNAL_ERROR_EMULATION) s += " (instruction emulation failed)";
    if (!e->insn.empty()) s += ", instruction bytes: " + FormatBytes(e->insn);
    return s;
  }
  if (const auto* e = std::get_if<exit::FailEntry>(&exit)) {
    return "KVM_EXIT_FAIL_ENTRY hardware reason 0x" + ToHex(e->hardware_reason) + " on host cpu " +
           std::to_string(e->cpu);
  }
  if (const auto* e = std::get_if<exit::SystemEvent>(&exit)) {
    return "KVM_EXIT_SYSTEM_EVENT type " + std::to_string(e->type);
  }
  if (const auto* e = std::get_if<exit::Unknown>(&exit)) {
    if (!e->why.empty()) return "malformed exit: " + e->why;
    return "unknown exit reason " + std::to_string(e->reason);
  }
  if (std::holds_alternative<exit::Shutdown>(exit)) {
    return "KVM_EXIT_SHUTDOWN (triple fault)";
  }
  if (std::holds_alternative<exit::Hlt>(exit)) return "KVM_EXIT_HLT";
  return ExitName(exit);
}

bool IsHandledIo(const VcpuExit& exit) {
  return std::holds_alternative<exit::IoIn>(exit) || std::holds_alternative<exit::IoOut>(exit) ||
         std::holds_alternative<exit::MmioRead>(exit) ||
         std::holds_alternative<exit::MmioWrite>(exit);
}

VcpuExit DispatchExit(std::span<uint8_t> run_area, const Buses& buses) {
  VcpuExit decoded = DecodeExit(run_area);
  if (auto* in = std::get_if<exit::IoIn>(&decoded)) {
    for (uint32_t i = 0; i < in->count; ++i) {
      buses.pio->Read(in->port, in->data.subspan(size_t{i} * in->size, in->size));
    }
  } else if (auto* out = std::get_if<exit::IoOut>(&decoded)) {
    for (uint32_t i = 0; i < out->count; ++i) {
      buses.pio->Write(out->port, out->data.subspan(size_t{i} * out->size, out->size));
    }
  } else if (auto* read = std::get_if<exit::MmioRead>(&decoded)) {
    buses.mmio->Read(read->addr, read->data);
  } else if (auto* write = std::get_if<exit::MmioWrite>(&decoded)) {
    buses.mmio->Write(write->addr, write->data);
  }
  return decoded;
}

}  // namespace kite
