// The guest CPUID transformation on synthetic supported-CPUID lists.
#include "vmm/cpuid.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace kite {
namespace {

kvm_cpuid_entry2 Entry(uint32_t function, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx,
                       uint32_t edx, bool indexed = false) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

// An Intel-like host: vendor, leaf 1 with APIC ID 7 and some features, leaf 4 (L1d and L3),
// leaf 7, leaf 0xB from the host, hypervisor leaves.
std::vector<kvm_cpuid_entry2> IntelSupported() {
  return {
      Entry(0x0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69),  // "GenuineIntel"
      Entry(0x1, 0, 0x000906ea, 0x07100800, 0x7ffafbbf, 0xbfebfbff),
      Entry(0x4, 0, 0x1c004121, 0x01c0003f, 0x3f, 0, true),    // L1d
      Entry(0x4, 1, 0x1c03c163, 0x02c0003f, 0x3fff, 6, true),  // L3
      Entry(0x7, 0, 0, 0xffffffff, 0xffffffff, 0xffffffff, true),
      Entry(0xb, 0, 1, 2, 0x100, 7, true),
      Entry(0xb, 1, 4, 8, 0x201, 7, true),
      Entry(0xd, 0, 0x2ff, 0, 0, 0, true),
      Entry(0x40000000, 0, 0x40000001, 0, 0, 0),
      Entry(0x40000001, 0, 0x01007afb, 0, 0, 0),
      Entry(0x80000001, 0, 0, 0, 0x121, 0x2c100800),
  };
}

const kvm_cpuid_entry2& Get(const std::vector<kvm_cpuid_entry2>& v, uint32_t f, uint32_t i = 0) {
  const kvm_cpuid_entry2* e = FindCpuid(v, f, i);
  EXPECT_NE(e, nullptr) << "leaf 0x" << std::hex << f << "." << i;
  static const kvm_cpuid_entry2 kEmpty{};
  return e ? *e : kEmpty;
}

TEST(Cpuid, Leaf1_ApicIdIsVcpuIndex) {
  auto out = BuildVcpuCpuid(IntelSupported(), {.vcpu_index = 3, .num_vcpus = 4});
  EXPECT_EQ(Get(out, 1).ebx >> 24, 3u);
  EXPECT_EQ((Get(out, 1).ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(Get(out, 1).ebx & 0xffff, 0x0800u);  // CLFLUSH size and brand kept
}

TEST(Cpuid, Leaf1_HypervisorBitSet) {
  auto supported = IntelSupported();
  supported[1].ecx &= ~(1u << 31);
  auto out = BuildVcpuCpuid(supported, {});
  EXPECT_TRUE(Get(out, 1).ecx & (1u << 31));
}

TEST(Cpuid, Leaf1_HttOnlyWithSeveralVcpus) {
  auto supported = IntelSupported();
  supported[1].edx &= ~(1u << 28);
  EXPECT_FALSE(Get(BuildVcpuCpuid(supported, {.num_vcpus = 1}), 1).edx & (1u << 28));
  EXPECT_TRUE(Get(BuildVcpuCpuid(supported, {.num_vcpus = 2}), 1).edx & (1u << 28));
}

TEST(Cpuid, LeafB_OneThreadPerCoreAllVcpusAsCores) {
  auto out = BuildVcpuCpuid(IntelSupported(), {.vcpu_index = 5, .num_vcpus = 6});
  const auto& smt = Get(out, 0xb, 0);
  EXPECT_EQ(smt.eax, 0u);
  EXPECT_EQ(smt.ebx, 1u);
  EXPECT_EQ(smt.ecx, 0x100u);
  EXPECT_EQ(smt.edx, 5u);
  const auto& core = Get(out, 0xb, 1);
  EXPECT_EQ(core.eax, 3u);  // 6 vCPUs need 3 bits
  EXPECT_EQ(core.ebx, 6u);
  EXPECT_EQ(core.ecx, 0x201u);
  EXPECT_EQ(core.edx, 5u);
  const auto& end = Get(out, 0xb, 2);
  EXPECT_EQ((end.ecx >> 8) & 0xff, 0u);
  EXPECT_EQ(end.edx, 5u);
}

TEST(Cpuid, LeafB_HostEntriesReplacedNotDuplicated) {
  auto out = BuildVcpuCpuid(IntelSupported(), {.num_vcpus = 2});
  int count = 0;
  for (const auto& e : out) count += e.function == 0xb;
  EXPECT_EQ(count, 3);
}

TEST(Cpuid, Leaf1F_OnlyWhenHostHasIt) {
  auto out = BuildVcpuCpuid(IntelSupported(), {});
  EXPECT_EQ(FindCpuid(out, 0x1f), nullptr);
  auto supported = IntelSupported();
  supported.push_back(Entry(0x1f, 0, 1, 2, 0x100, 0, true));
  out = BuildVcpuCpuid(supported, {.vcpu_index = 1, .num_vcpus = 2});
  EXPECT_EQ(Get(out, 0x1f, 1).ebx, 2u);
  EXPECT_EQ(Get(out, 0x1f, 0).edx, 1u);
}

TEST(Cpuid, Leaf4_CoresAndSharing) {
  auto out = BuildVcpuCpuid(IntelSupported(), {.num_vcpus = 4});
  const auto& l1 = Get(out, 4, 0);
  EXPECT_EQ(l1.eax >> 26, 3u);
  EXPECT_EQ((l1.eax >> 14) & 0xfff, 0u);
  EXPECT_EQ(l1.eax & 0x3fff, 0x0121u);  // cache type/level kept
  const auto& l3 = Get(out, 4, 1);
  EXPECT_EQ((l3.eax >> 14) & 0xfff, 3u);
}

TEST(Cpuid, KvmSignatureLeaf) {
  auto supported = IntelSupported();
  supported.erase(supported.begin() + 8);  // drop 0x40000000
  auto out = BuildVcpuCpuid(supported, {});
  const auto& hv = Get(out, 0x40000000);
  char sig[13] = {};
  std::memcpy(sig, &hv.ebx, 4);
  std::memcpy(sig + 4, &hv.ecx, 4);
  std::memcpy(sig + 8, &hv.edx, 4);
  EXPECT_STREQ(sig, "KVMKVMKVM");
  EXPECT_EQ(hv.eax, 0x40000001u);
}

TEST(Cpuid, HostTemplate_KeepsFeatures) {
  auto out = BuildVcpuCpuid(IntelSupported(), {.cpu_template = CpuTemplate::kHost});
  EXPECT_EQ(Get(out, 7).ebx, 0xffffffffu);
}

TEST(Cpuid, MinimalTemplate_HidesAvx512TsxAndVmx) {
  auto out = BuildVcpuCpuid(IntelSupported(), {.cpu_template = CpuTemplate::kMinimal});
  const auto& l7 = Get(out, 7);
  EXPECT_FALSE(l7.ebx & (1u << 16));                   // AVX512F
  EXPECT_FALSE(l7.ebx & (1u << 11));                   // RTM
  EXPECT_TRUE(l7.ebx & (1u << 5));                     // AVX2 kept
  EXPECT_FALSE(Get(out, 1).ecx & (1u << 5));           // VMX
  EXPECT_TRUE(Get(out, 1).ecx & (1u << 28));           // AVX kept
  EXPECT_EQ(Get(out, 0xd).eax & 0xe0, 0u);             // AVX-512 XSAVE components
  EXPECT_FALSE(Get(out, 0x80000001).ecx & (1u << 2));  // SVM
}

TEST(Cpuid, AmdHost_CoreCountInLeaf80000008) {
  std::vector<kvm_cpuid_entry2> supported = {
      Entry(0x0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65),  // "AuthenticAMD"
      Entry(0x1, 0, 0, 0, 0, 0),
      Entry(0x80000008, 0, 0x3030, 0, 0xf0ff, 0),
  };
  auto out = BuildVcpuCpuid(supported, {.num_vcpus = 4});
  EXPECT_EQ(Get(out, 0x80000008).ecx & 0xff, 3u);
  EXPECT_EQ((Get(out, 0x80000008).ecx >> 12) & 0xf, 2u);
}

TEST(Cpuid, ParseTemplate) {
  EXPECT_EQ(*ParseCpuTemplate("host"), CpuTemplate::kHost);
  EXPECT_EQ(*ParseCpuTemplate("minimal"), CpuTemplate::kMinimal);
  auto bad = ParseCpuTemplate("skylake");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("skylake"), std::string::npos);
}

}  // namespace
}  // namespace kite
