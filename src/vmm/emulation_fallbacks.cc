// The emulation-failure fallback table and its application. See emulation_fallbacks.h.
#include "vmm/emulation_fallbacks.h"

#include <algorithm>

#include "vmm/kvm.h"

namespace kite {
namespace {

constexpr uint8_t kInt3[] = {0xcc};
constexpr uint8_t kFwait[] = {0x9b};
constexpr uint8_t kBreakpointVector = 3;

// int3: Linux runs it in its alternatives self-test and whenever it patches live code; the
// guest's #BP handler expects RIP after the instruction, as the CPU would push it.
// fwait: a no-op without pending x87 exceptions (Linux runs it on every process exit).
const EmulationFallback kFallbacks[] = {
    {"int3", kInt3, {1, kBreakpointVector}},
    {"fwait", kFwait, {1, std::nullopt}},
};

}  // namespace

std::span<const EmulationFallback> EmulationFallbacks() {
  return kFallbacks;
}

const EmulationFallback* MatchFallback(std::span<const uint8_t> insn) {
  for (const EmulationFallback& f : kFallbacks) {
    if (insn.size() >= f.pattern.size() &&
        std::equal(f.pattern.begin(), f.pattern.end(), insn.begin())) {
      return &f;
    }
  }
  return nullptr;
}

Result<void> ApplyFallback(VcpuFd& vcpu, const FallbackAction& action) {
  kvm_regs regs = TRY(vcpu.GetRegs());
  regs.rip += action.advance_rip;
  TRY(vcpu.SetRegs(regs));
  if (action.inject_vector) {
    kvm_vcpu_events events = TRY(vcpu.GetEvents());
    events.exception.injected = 1;
    events.exception.nr = *action.inject_vector;
    events.exception.has_error_code = 0;
    events.exception.error_code = 0;
    events.flags = 0;  // leave NMI, SIPI and shadow state as they are
    TRY(vcpu.SetEvents(events));
  }
  return {};
}

}  // namespace kite
