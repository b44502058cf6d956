// Architectural vCPU state kite sets before the boot-protocol state (boot/loader.h): CPUID,
// the MSRs Linux expects at boot, the FPU control words and the LAPIC's LINT pins.
// The builders are pure (unit-tested); ConfigureVcpu() applies them through the vCPU fd.
#pragma once

#include <linux/kvm.h>

#include <span>
#include <vector>

#include "base/result.h"
#include "vmm/cpuid.h"

namespace kite {

class VcpuFd;

// MSR numbers (Intel SDM vol. 4).
inline constexpr uint32_t kMsrIa32Tsc = 0x10;
inline constexpr uint32_t kMsrIa32SysenterCs = 0x174;
inline constexpr uint32_t kMsrIa32SysenterEsp = 0x175;
inline constexpr uint32_t kMsrIa32SysenterEip = 0x176;
inline constexpr uint32_t kMsrIa32MiscEnable = 0x1a0;
inline constexpr uint32_t kMsrMtrrDefType = 0x2ff;
inline constexpr uint32_t kMsrStar = 0xc0000081;
inline constexpr uint32_t kMsrLstar = 0xc0000082;
inline constexpr uint32_t kMsrCstar = 0xc0000083;
inline constexpr uint32_t kMsrSyscallMask = 0xc0000084;
inline constexpr uint32_t kMsrKernelGsBase = 0xc0000102;

inline constexpr uint64_t kMiscEnableFastStrings = 1;
inline constexpr uint64_t kMtrrEnableWriteBack = (1u << 11) | 6;  // MTRRs on, default WB

// The MSRs and values set on every vCPU at boot.
std::vector<kvm_msr_entry> BootMsrs();
// x87 control word 0x37f (all exceptions masked), MXCSR 0x1f80.
kvm_fpu BootFpu();

// LAPIC register offsets and LVT delivery modes.
inline constexpr uint32_t kApicLvtLint0 = 0x350;
inline constexpr uint32_t kApicLvtLint1 = 0x360;
inline constexpr uint32_t kApicDeliveryModeNmi = 4;
inline constexpr uint32_t kApicDeliveryModeExtInt = 7;

// LINT0 = ExtINT (the PIC's output), LINT1 = NMI, as a PC BIOS leaves the BSP.
void SetLapicLintModes(kvm_lapic_state& lapic);
uint32_t ReadApicRegister(const kvm_lapic_state& lapic, uint32_t offset);

struct VcpuSetup {
  std::span<const kvm_cpuid_entry2> supported_cpuid;
  CpuidParams cpuid;
};

// CPUID, MSRs, FPU; the LAPIC LINT pins on the boot vCPU (index 0).
Result<void> ConfigureVcpu(VcpuFd& vcpu, const VcpuSetup& setup);

}  // namespace kite
