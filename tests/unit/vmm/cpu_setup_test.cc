// Boot MSRs, FPU and LAPIC LINT modes (pure builders).
#include "vmm/cpu_setup.h"

#include <gtest/gtest.h>

#include <cstring>

namespace kite {
namespace {

const kvm_msr_entry* FindMsr(const std::vector<kvm_msr_entry>& msrs, uint32_t index) {
  for (const auto& m : msrs) {
    if (m.index == index) return &m;
  }
  return nullptr;
}

TEST(CpuSetup, BootMsrs_FastStringsAndZeroedSyscallState) {
  auto msrs = BootMsrs();
  ASSERT_NE(FindMsr(msrs, kMsrIa32MiscEnable), nullptr);
  EXPECT_EQ(FindMsr(msrs, kMsrIa32MiscEnable)->data & kMiscEnableFastStrings, 1u);
  for (uint32_t index :
       {kMsrStar, kMsrLstar, kMsrCstar, kMsrSyscallMask, kMsrKernelGsBase, kMsrIa32SysenterCs,
        kMsrIa32SysenterEsp, kMsrIa32SysenterEip, kMsrIa32Tsc}) {
    const kvm_msr_entry* m = FindMsr(msrs, index);
    ASSERT_NE(m, nullptr) << std::hex << index;
    EXPECT_EQ(m->data, 0u) << std::hex << index;
  }
}

TEST(CpuSetup, BootMsrs_NoApicBase) {
  // The APIC base stays the in-kernel LAPIC's default.
  EXPECT_EQ(FindMsr(BootMsrs(), 0x1b), nullptr);
}

TEST(CpuSetup, BootFpu_ControlWords) {
  kvm_fpu fpu = BootFpu();
  EXPECT_EQ(fpu.fcw, 0x37f);
  EXPECT_EQ(fpu.mxcsr, 0x1f80u);
}

TEST(CpuSetup, LapicLint_ExtIntAndNmi_OtherBitsKept) {
  kvm_lapic_state lapic{};
  uint32_t masked_fixed = 0x10000 | 0x30;  // masked, vector 0x30, delivery mode fixed
  std::memcpy(lapic.regs + kApicLvtLint0, &masked_fixed, 4);
  std::memcpy(lapic.regs + kApicLvtLint1, &masked_fixed, 4);
  SetLapicLintModes(lapic);
  EXPECT_EQ(ReadApicRegister(lapic, kApicLvtLint0), 0x10000u | 0x30 | (7u << 8));
  EXPECT_EQ(ReadApicRegister(lapic, kApicLvtLint1), 0x10000u | 0x30 | (4u << 8));
}

}  // namespace
}  // namespace kite
