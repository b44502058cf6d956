// The pure parts of KVM state save/restore: the MSR filter and restore order, the TSC
// tolerance, checks of untrusted state and CPUID compatibility.
#include "vmm/kvm_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "vmm/cpu_setup.h"

namespace kite {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

kvm_cpuid_entry2 Leaf(uint32_t function, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx,
                      uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.flags = function == 0x7 || function == 0xd ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

// "GenuineIntel" in leaf 0's EBX, EDX, ECX.
kvm_cpuid_entry2 IntelLeaf0() {
  return Leaf(0, 0, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69);
}
kvm_cpuid_entry2 AmdLeaf0() {
  return Leaf(0, 0, 0xd, 0x68747541, 0x444d4163, 0x69746e65);
}

std::vector<kvm_cpuid_entry2> HostCpuid() {
  return {IntelLeaf0(), Leaf(1, 0, 0, 0, 0x00000201, 0x078bfbff),
          Leaf(7, 0, 0, 0x000001ab, 0x00000004, 0x10000000), Leaf(0xd, 1, 0x0000000f, 0, 0, 0),
          Leaf(0x80000001, 0, 0, 0, 0x00000121, 0x2c100800)};
}

VcpuState GoodVcpuState() {
  VcpuState s;
  s.xsave.assign(4096, 0);
  s.cpuid = HostCpuid();
  s.msrs = {{kMsrIa32Tsc, 0, 1000}};
  return s;
}

TEST(SerializableMsrs, KeepsFirecrackerRangesOnly) {
  std::vector<uint32_t> host = {0x10,       0x11,       0x12,       0x1b,       0x3b,
                                0x48,       0x174,      0x176,      0x179,      0x17b,
                                0x1a0,      0x200,      0x277,      0x2ff,      0x400,
                                0x6e0,      0x800,      0x8ff,      0x900,      0xda0,
                                0x4b564d00, 0x4b564dff, 0x4b564e00, 0xc0000080, 0xc0000084,
                                0xc0000102, 0xc0000103, 0xc0000104, 0x122};
  EXPECT_THAT(SerializableMsrs(host),
              ElementsAre(0x10, 0x11, 0x12, 0x1b, 0x3b, 0x48, 0x174, 0x176, 0x1a0, 0x200, 0x277,
                          0x2ff, 0x400, 0x6e0, 0x800, 0x8ff, 0xda0, 0x4b564d00, 0x4b564dff,
                          0xc0000080, 0xc0000084, 0xc0000102, 0xc0000103, 0x122));
}

TEST(SerializableMsrs, DropsMcgCtlAndDuplicates) {
  std::vector<uint32_t> host = {kMsrIa32McgCtl, 0x10, 0x10};
  EXPECT_THAT(SerializableMsrs(host), ElementsAre(0x10u));
}

TEST(FixZeroTscDeadline, ZeroBecomesTsc) {
  std::vector<kvm_msr_entry> msrs = {{kMsrIa32TscDeadline, 0, 0}, {kMsrIa32Tsc, 0, 12345}};
  FixZeroTscDeadline(msrs);
  EXPECT_EQ(msrs[0].data, 12345u);
}

TEST(FixZeroTscDeadline, NonZeroKept) {
  std::vector<kvm_msr_entry> msrs = {{kMsrIa32Tsc, 0, 12345}, {kMsrIa32TscDeadline, 0, 99}};
  FixZeroTscDeadline(msrs);
  EXPECT_EQ(msrs[1].data, 99u);
}

TEST(MsrsInRestoreOrder, TscDeadlineAfterTsc) {
  std::vector<kvm_msr_entry> msrs = {
      {kMsrIa32TscDeadline, 0, 5}, {0x1b, 0, 1}, {kMsrIa32Tsc, 0, 2}, {0xc0000080, 0, 3}};
  std::vector<uint32_t> order;
  for (const auto& e : MsrsInRestoreOrder(msrs)) order.push_back(e.index);
  EXPECT_THAT(order, ElementsAre(0x1bu, kMsrIa32Tsc, 0xc0000080u, kMsrIa32TscDeadline));
}

TEST(TscScalingRequired, Beyond250Ppm) {
  EXPECT_FALSE(TscScalingRequired(2'000'000, 2'000'000));
  EXPECT_FALSE(TscScalingRequired(2'000'500, 2'000'000));  // exactly 250 ppm
  EXPECT_TRUE(TscScalingRequired(2'000'501, 2'000'000));
  EXPECT_TRUE(TscScalingRequired(1'999'499, 2'000'000));
  EXPECT_TRUE(TscScalingRequired(3'000'000, 2'000'000));
}

TEST(ValidateVcpuState, GoodStatePasses) {
  EXPECT_TRUE(ValidateVcpuState(GoodVcpuState(), HostKvm{}));
}

TEST(ValidateVcpuState, XsaveSizeMismatch_NamesBothSizes) {
  VcpuState s = GoodVcpuState();
  s.xsave.resize(8192);
  auto r = ValidateVcpuState(s, HostKvm{});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("xsave"));
  EXPECT_THAT(r.error().message(), HasSubstr("8192"));
  EXPECT_THAT(r.error().message(), HasSubstr("4096"));
}

TEST(ValidateVcpuState, BadMpState) {
  VcpuState s = GoodVcpuState();
  s.mp_state.mp_state = 77;
  auto r = ValidateVcpuState(s, HostKvm{});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("mp_state: 77"));
}

TEST(ValidateVcpuState, TooManyMsrs) {
  VcpuState s = GoodVcpuState();
  s.msrs.resize(kMaxSavedMsrs + 1);
  EXPECT_THAT(ValidateVcpuState(s, HostKvm{}).error().message(), HasSubstr("msrs: 1025"));
}

TEST(ValidateVcpuState, CpuidEmptyOrTooLong) {
  VcpuState s = GoodVcpuState();
  s.cpuid.clear();
  EXPECT_THAT(ValidateVcpuState(s, HostKvm{}).error().message(), HasSubstr("cpuid: 0"));
  s.cpuid.resize(kMaxSavedCpuidEntries + 1);
  EXPECT_THAT(ValidateVcpuState(s, HostKvm{}).error().message(), HasSubstr("cpuid: 257"));
}

TEST(ValidateVcpuState, TooManyXcrs) {
  VcpuState s = GoodVcpuState();
  s.xcrs.nr_xcrs = KVM_MAX_XCRS + 1;
  EXPECT_THAT(ValidateVcpuState(s, HostKvm{}).error().message(), HasSubstr("xcrs"));
}

TEST(ValidateVmState, ChipIds) {
  VmState s;
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  EXPECT_TRUE(ValidateVmState(s));
  s.ioapic.chip_id = 0;
  EXPECT_THAT(ValidateVmState(s).error().message(), HasSubstr("ioapic: chip_id 0, expected 2"));
}

TEST(CheckCpuidCompatible, SameCpuidPasses) {
  EXPECT_TRUE(CheckCpuidCompatible(HostCpuid(), HostCpuid()));
}

TEST(CheckCpuidCompatible, SubsetPasses) {
  std::vector<kvm_cpuid_entry2> saved = HostCpuid();
  saved[2].ebx = 0x1;  // fewer leaf 7 features than the host
  EXPECT_TRUE(CheckCpuidCompatible(saved, HostCpuid()));
}

TEST(CheckCpuidCompatible, RuntimeAndVmmBitsIgnored) {
  std::vector<kvm_cpuid_entry2> saved = HostCpuid();
  saved[1].ecx |= (1u << 31) | (1u << 27) | (1u << 24);  // hypervisor, OSXSAVE, TSC deadline
  saved[1].edx |= 1u << 28;                              // HTT
  saved[2].ecx |= 1u << 4;                               // OSPKE
  EXPECT_TRUE(CheckCpuidCompatible(saved, HostCpuid()));
}

TEST(CheckCpuidCompatible, MissingLeaf7Bit_NamesLeafRegisterAndBit) {
  std::vector<kvm_cpuid_entry2> saved = HostCpuid();
  saved[2].ebx |= 1u << 16;  // AVX512F
  auto r = CheckCpuidCompatible(saved, HostCpuid());
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("leaf 0x7.0 EBX bits 0x00010000 (bit 16)"));
}

TEST(CheckCpuidCompatible, SeveralMissing_AllNamed) {
  std::vector<kvm_cpuid_entry2> saved = HostCpuid();
  saved[1].ecx |= (1u << 12) | (1u << 28);  // FMA, AVX
  saved[3].eax |= 1u << 4;                  // XFD
  saved[4].edx |= 1u << 30;                 // 3DNow! extensions
  auto r = CheckCpuidCompatible(saved, HostCpuid());
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("leaf 0x1.0 ECX bits 0x10001000 (bit 12,28)"));
  EXPECT_THAT(r.error().message(), HasSubstr("leaf 0xd.1 EAX bits 0x00000010 (bit 4)"));
  EXPECT_THAT(r.error().message(), HasSubstr("leaf 0x80000001.0 EDX bits 0x40000000 (bit 30)"));
}

TEST(CheckCpuidCompatible, LeafAbsentOnHost_AllBitsMissing) {
  std::vector<kvm_cpuid_entry2> host = HostCpuid();
  host.erase(host.begin() + 3);  // no leaf 0xd.1 on the host
  auto r = CheckCpuidCompatible(HostCpuid(), host);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("leaf 0xd.1 EAX bits 0x0000000f"));
}

TEST(CheckCpuidCompatible, OtherVendorRefused) {
  std::vector<kvm_cpuid_entry2> host = HostCpuid();
  host[0] = AmdLeaf0();
  auto r = CheckCpuidCompatible(HostCpuid(), host);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("GenuineIntel"));
  EXPECT_THAT(r.error().message(), HasSubstr("AuthenticAMD"));
}

}  // namespace
}  // namespace kite
