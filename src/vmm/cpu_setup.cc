// Boot-time vCPU state: CPUID, MSRs, FPU, LAPIC LINT pins. See cpu_setup.h.
#include "vmm/cpu_setup.h"

#include <cstring>

#include "base/log.h"
#include "vmm/kvm.h"

namespace kite {

std::vector<kvm_msr_entry> BootMsrs() {
  auto msr = [](uint32_t index, uint64_t data) {
    kvm_msr_entry e{};
    e.index = index;
    e.data = data;
    return e;
  };
  return {
      msr(kMsrIa32SysenterCs, 0),
      msr(kMsrIa32SysenterEsp, 0),
      msr(kMsrIa32SysenterEip, 0),
      msr(kMsrStar, 0),
      msr(kMsrCstar, 0),
      msr(kMsrKernelGsBase, 0),
      msr(kMsrSyscallMask, 0),
      msr(kMsrLstar, 0),
      msr(kMsrIa32Tsc, 0),
      msr(kMsrIa32MiscEnable, kMiscEnableFastStrings),
      msr(kMsrMtrrDefType, kMtrrEnableWriteBack),
  };
}

kvm_fpu BootFpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  return fpu;
}

uint32_t ReadApicRegister(const kvm_lapic_state& lapic, uint32_t offset) {
  uint32_t value;
  std::memcpy(&value, lapic.regs + offset, sizeof(value));
  return value;
}

static void WriteApicRegister(kvm_lapic_state& lapic, uint32_t offset, uint32_t value) {
  std::memcpy(lapic.regs + offset, &value, sizeof(value));
}

void SetLapicLintModes(kvm_lapic_state& lapic) {
  constexpr uint32_t kDeliveryModeMask = 0x700;
  uint32_t lint0 = ReadApicRegister(lapic, kApicLvtLint0);
  WriteApicRegister(lapic, kApicLvtLint0,
                    (lint0 & ~kDeliveryModeMask) | (kApicDeliveryModeExtInt << 8));
  uint32_t lint1 = ReadApicRegister(lapic, kApicLvtLint1);
  WriteApicRegister(lapic, kApicLvtLint1,
                    (lint1 & ~kDeliveryModeMask) | (kApicDeliveryModeNmi << 8));
}

Result<void> ConfigureVcpu(VcpuFd& vcpu, const VcpuSetup& setup) {
  std::vector<kvm_cpuid_entry2> cpuid = BuildVcpuCpuid(setup.supported_cpuid, setup.cpuid);
  TRY(vcpu.SetCpuid(cpuid));
  // Each MSR alone, so that one the host refuses (seen with exotic hosts) costs a warning only.
  for (const kvm_msr_entry& msr : BootMsrs()) {
    if (auto r = vcpu.SetMsrs({&msr, 1}); !r) {
      KITE_LOG(Warn, "vCPU %u: %s", vcpu.index(), r.error().message().c_str());
    }
  }
  TRY(vcpu.SetFpu(BootFpu()));
  if (vcpu.index() == 0) {
    kvm_lapic_state lapic = TRY(vcpu.GetLapic());
    SetLapicLintModes(lapic);
    TRY(vcpu.SetLapic(lapic));
  }
  return {};
}

}  // namespace kite
