// Emulation-failure fallbacks: instructions some hosts' KVM cannot emulate
// (KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION, see docs/VMM.md and MACHINE.md),
// which kite completes itself. A table of {instruction-byte pattern → action}: add a row to
// handle another instruction. Matching is pure; ApplyFallback() does the vCPU state changes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "base/result.h"

namespace kite {

class VcpuFd;

struct FallbackAction {
  uint8_t advance_rip = 0;               // bytes to skip
  std::optional<uint8_t> inject_vector;  // exception to inject after advancing (no error code)
};

struct EmulationFallback {
  const char* name;                  // "int3"
  std::span<const uint8_t> pattern;  // the instruction's leading bytes
  FallbackAction action;
};

// The fallback whose pattern prefixes `insn`, or nullptr.
const EmulationFallback* MatchFallback(std::span<const uint8_t> insn);

// The whole table (for documentation and tests).
std::span<const EmulationFallback> EmulationFallbacks();

// Advances RIP and injects the exception, if any, through KVM_SET_VCPU_EVENTS.
Result<void> ApplyFallback(VcpuFd& vcpu, const FallbackAction& action);

}  // namespace kite
