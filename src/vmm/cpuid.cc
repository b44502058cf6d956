// The guest CPUID transformation. See cpuid.h. Bit positions as in the Intel SDM vol. 2A
// (CPUID instruction) and the AMD APM vol. 3 (appendix E).
#include "vmm/cpuid.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

namespace kite {
namespace {

constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafCacheParams = 0x4;
constexpr uint32_t kLeafExtTopology = 0xb;
constexpr uint32_t kLeafV2ExtTopology = 0x1f;
constexpr uint32_t kLeafHypervisor = 0x40000000;
constexpr uint32_t kLeafKvmFeatures = 0x40000001;
constexpr uint32_t kLeafAmdSizes = 0x80000008;

constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
constexpr uint32_t kTopologyLevelSmt = 1;
constexpr uint32_t kTopologyLevelCore = 2;

enum Reg { kEax, kEbx, kEcx, kEdx };

struct FeatureMask {
  uint32_t function;
  uint32_t index;
  Reg reg;
  uint32_t clear;  // bits the template hides
};

constexpr uint32_t Bits(std::initializer_list<int> bits) {
  uint32_t mask = 0;
  for (int b : bits) mask |= 1u << b;
  return mask;
}

// The "minimal" template.
const FeatureMask kMinimalMasks[] = {
    // leaf 1 ECX: DTES64, MONITOR, DS-CPL, VMX, SMX, EST, TM2, xTPR, PDCM
    {0x1, 0, kEcx, Bits({2, 3, 4, 5, 6, 7, 8, 14, 15})},
    // leaf 1 EDX: DS, ACPI (thermal), TM, PBE
    {0x1, 0, kEdx, Bits({21, 22, 29, 31})},
    // leaf 7.0 EBX: SGX, HLE, RTM, MPX, AVX512F/DQ/IFMA, Intel PT, AVX512PF/ER/CD/BW/VL
    {0x7, 0, kEbx, Bits({2, 4, 11, 14, 16, 17, 21, 25, 26, 27, 28, 30, 31})},
    // leaf 7.0 ECX: AVX512_VBMI, PKU, OSPKE, WAITPKG, AVX512_VBMI2/VNNI/BITALG/VPOPCNTDQ, LA57,
    // SGX_LC
    {0x7, 0, kEcx, Bits({1, 3, 4, 5, 6, 11, 12, 14, 16, 30})},
    // leaf 7.0 EDX: AVX512_4VNNIW/4FMAPS, AVX512_VP2INTERSECT, AMX-BF16, AVX512_FP16, AMX
    {0x7, 0, kEdx, Bits({2, 3, 8, 22, 23, 24, 25})},
    // leaf 0xD.0 EAX: XSAVE state components of the hidden features (opmask, ZMM, PKRU, AMX)
    {0xd, 0, kEax, Bits({5, 6, 7, 9, 17, 18})},
    // leaf 0x80000001 ECX: SVM
    {0x80000001, 0, kEcx, Bits({2})},
};

uint32_t& RegOf(kvm_cpuid_entry2& e, Reg reg) {
  switch (reg) {
    case kEax:
      return e.eax;
    case kEbx:
      return e.ebx;
    case kEcx:
      return e.ecx;
    case kEdx:
      break;
  }
  return e.edx;
}

bool Matches(const kvm_cpuid_entry2& e, uint32_t function, uint32_t index) {
  if (e.function != function) return false;
  return (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) == 0 || e.index == index;
}

// Bits needed to number `n` items (0 for 1 item).
uint32_t CountBits(uint32_t n) {
  return n <= 1 ? 0 : std::bit_width(n - 1);
}

bool IsAmd(std::span<const kvm_cpuid_entry2> entries) {
  const kvm_cpuid_entry2* leaf0 = FindCpuid(entries, 0);
  if (leaf0 == nullptr) return false;
  char vendor[12];
  std::memcpy(vendor, &leaf0->ebx, 4);
  std::memcpy(vendor + 4, &leaf0->edx, 4);
  std::memcpy(vendor + 8, &leaf0->ecx, 4);
  return std::string(vendor, 12) == "AuthenticAMD" || std::string(vendor, 12) == "HygonGenuine";
}

// x2APIC topology leaf (0xB or 0x1F): level 0 = SMT (1 thread), level 1 = core (all vCPUs),
// then an invalid level. EDX is the x2APIC ID at every level.
void AddTopologyLeaf(std::vector<kvm_cpuid_entry2>& out, uint32_t function, const CpuidParams& p) {
  for (uint32_t level = 0; level < 3; ++level) {
    kvm_cpuid_entry2 e{};
    e.function = function;
    e.index = level;
    e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    e.edx = p.vcpu_index;
    if (level == 0) {
      e.eax = 0;
      e.ebx = 1;
      e.ecx = (kTopologyLevelSmt << 8) | level;
    } else if (level == 1) {
      e.eax = CountBits(p.num_vcpus);
      e.ebx = p.num_vcpus;
      e.ecx = (kTopologyLevelCore << 8) | level;
    } else {
      e.ecx = level;
    }
    out.push_back(e);
  }
}

void ApplyTopology(kvm_cpuid_entry2& e, const CpuidParams& p, bool amd) {
  if (e.function == kLeafFeatures) {
    e.ebx = (e.ebx & 0x0000ffff) | (p.vcpu_index << 24) | ((p.num_vcpus & 0xff) << 16);
    if (p.num_vcpus > 1) e.edx |= kLeaf1EdxHtt;
    e.ecx |= kLeaf1EcxHypervisor;
  } else if (e.function == kLeafCacheParams && (e.eax & 0x1f) != 0) {
    // EAX[31:26] cores per package - 1; EAX[25:14] logical processors sharing the cache - 1:
    // one per core for L1/L2, the whole package for L3.
    uint32_t cache_level = (e.eax >> 5) & 0x7;
    uint32_t sharing = cache_level >= 3 ? p.num_vcpus - 1 : 0;
    e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((p.num_vcpus - 1) & 0x3f) << 26);
  } else if (e.function == kLeafAmdSizes && amd) {
    // ECX[7:0] cores - 1, ECX[15:12] APIC ID bits for the core number.
    e.ecx = (e.ecx & ~0xf0ffu) | ((p.num_vcpus - 1) & 0xff) | (CountBits(p.num_vcpus) << 12);
  }
}

void ApplyTemplate(kvm_cpuid_entry2& e, CpuTemplate t) {
  if (t != CpuTemplate::kMinimal) return;
  for (const FeatureMask& m : kMinimalMasks) {
    if (Matches(e, m.function, m.index)) RegOf(e, m.reg) &= ~m.clear;
  }
}

void EnsureKvmSignature(std::vector<kvm_cpuid_entry2>& out) {
  bool has_features = FindCpuid(out, kLeafKvmFeatures) != nullptr;
  auto it = std::find_if(out.begin(), out.end(),
                         [](const auto& e) { return e.function == kLeafHypervisor; });
  if (it == out.end()) {
    out.push_back(kvm_cpuid_entry2{});
    it = out.end() - 1;
    it->function = kLeafHypervisor;
  }
  static constexpr char kSignature[12] = {'K', 'V', 'M', 'K', 'V', 'M', 'K', 'V', 'M', 0, 0, 0};
  std::memcpy(&it->ebx, kSignature, 4);
  std::memcpy(&it->ecx, kSignature + 4, 4);
  std::memcpy(&it->edx, kSignature + 8, 4);
  it->eax = std::max(it->eax, has_features ? kLeafKvmFeatures : kLeafHypervisor);
}

}  // namespace

Result<CpuTemplate> ParseCpuTemplate(std::string_view name) {
  if (name == "host") return CpuTemplate::kHost;
  if (name == "minimal") return CpuTemplate::kMinimal;
  return Err("unknown CPU template '" + std::string(name) + "' (expected host or minimal)");
}

const char* CpuTemplateName(CpuTemplate t) {
  return t == CpuTemplate::kMinimal ? "minimal" : "host";
}

const kvm_cpuid_entry2* FindCpuid(std::span<const kvm_cpuid_entry2> entries, uint32_t function,
                                  uint32_t index) {
  for (const kvm_cpuid_entry2& e : entries) {
    if (Matches(e, function, index)) return &e;
  }
  return nullptr;
}

std::vector<kvm_cpuid_entry2> BuildVcpuCpuid(std::span<const kvm_cpuid_entry2> supported,
                                             const CpuidParams& params) {
  CpuidParams p = params;
  p.num_vcpus = std::max<uint32_t>(p.num_vcpus, 1);
  bool amd = IsAmd(supported);
  bool has_0b = FindCpuid(supported, kLeafExtTopology) != nullptr;
  bool has_1f = FindCpuid(supported, kLeafV2ExtTopology) != nullptr;

  std::vector<kvm_cpuid_entry2> out;
  out.reserve(supported.size() + 6);
  for (kvm_cpuid_entry2 e : supported) {
    if (e.function == kLeafExtTopology || e.function == kLeafV2ExtTopology) continue;
    ApplyTopology(e, p, amd);
    ApplyTemplate(e, p.cpu_template);
    out.push_back(e);
  }
  if (has_0b) AddTopologyLeaf(out, kLeafExtTopology, p);
  if (has_1f) AddTopologyLeaf(out, kLeafV2ExtTopology, p);
  EnsureKvmSignature(out);
  return out;
}

}  // namespace kite
