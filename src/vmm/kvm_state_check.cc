// Checks of untrusted vCPU and VM state (a snapshot file) against this host: sizes, ranges and
// the guest CPUID's features. Pure functions; see kvm_state.h.
#include <cstdio>
#include <string>

#include "base/units.h"
#include "vmm/cpuid.h"
#include "vmm/kvm_state.h"

namespace kite {
namespace {

enum class Reg { kEax, kEbx, kEcx, kEdx };

struct FeatureWord {
  uint32_t function;
  uint32_t index;
  Reg reg;
  const char* name;
  // Bits KVM or the VMM set at run time or for topology, never taken from
  // KVM_GET_SUPPORTED_CPUID, so never a reason to refuse.
  uint32_t ignored;
};

constexpr uint32_t kLeaf1EcxTscDeadline = 1u << 24;  // always emulated by the in-kernel LAPIC
constexpr uint32_t kLeaf1EcxOsxsave = 1u << 27;      // mirrors CR4.OSXSAVE
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;   // set by kite (cpuid.cc)
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;          // set by kite with more than one vCPU
constexpr uint32_t kLeaf7EcxOspke = 1u << 4;         // mirrors CR4.PKE

constexpr FeatureWord kFeatureWords[] = {
    {0x1, 0, Reg::kEcx, "ECX", kLeaf1EcxTscDeadline | kLeaf1EcxOsxsave | kLeaf1EcxHypervisor},
    {0x1, 0, Reg::kEdx, "EDX", kLeaf1EdxHtt},
    {0x7, 0, Reg::kEbx, "EBX", 0},
    {0x7, 0, Reg::kEcx, "ECX", kLeaf7EcxOspke},
    {0x7, 0, Reg::kEdx, "EDX", 0},
    {0xd, 1, Reg::kEax, "EAX", 0},
    {0x80000001, 0, Reg::kEcx, "ECX", 0},
    {0x80000001, 0, Reg::kEdx, "EDX", 0},
};

uint32_t Get(const kvm_cpuid_entry2& e, Reg reg) {
  switch (reg) {
    case Reg::kEax:
      return e.eax;
    case Reg::kEbx:
      return e.ebx;
    case Reg::kEcx:
      return e.ecx;
    case Reg::kEdx:
      return e.edx;
  }
  return 0;
}

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

std::string BitList(uint32_t bits) {
  std::string out;
  for (int b = 0; b < 32; ++b) {
    if ((bits & (1u << b)) == 0) continue;
    out += (out.empty() ? "" : ",") + std::to_string(b);
  }
  return out;
}

std::string Vendor(std::span<const kvm_cpuid_entry2> cpuid) {
  const kvm_cpuid_entry2* leaf0 = FindCpuid(cpuid, 0);
  if (leaf0 == nullptr) return "";
  std::string v(12, '\0');
  for (int i = 0; i < 4; ++i) {
    v[i] = static_cast<char>(leaf0->ebx >> (8 * i));
    v[4 + i] = static_cast<char>(leaf0->edx >> (8 * i));
    v[8 + i] = static_cast<char>(leaf0->ecx >> (8 * i));
  }
  return v;
}

}  // namespace

Result<void> ValidateVcpuState(const VcpuState& s, const HostKvm& host) {
  if (s.xsave.size() != host.xsave_size) {
    return Err("xsave: the snapshot's XSAVE area has " + std::to_string(s.xsave.size()) +
               " bytes, this host's KVM uses " + std::to_string(host.xsave_size) +
               " (a snapshot from a host with other XSAVE features)");
  }
  if (s.mp_state.mp_state > KVM_MP_STATE_SIPI_RECEIVED) {
    return Err("mp_state: " + std::to_string(s.mp_state.mp_state) +
               " is not an x86 MP state (0..4)");
  }
  if (s.msrs.size() > kMaxSavedMsrs) {
    return Err("msrs: " + std::to_string(s.msrs.size()) + " entries, at most " +
               std::to_string(kMaxSavedMsrs));
  }
  if (s.cpuid.empty() || s.cpuid.size() > kMaxSavedCpuidEntries) {
    return Err("cpuid: " + std::to_string(s.cpuid.size()) + " entries, expected 1 to " +
               std::to_string(kMaxSavedCpuidEntries));
  }
  if (s.xcrs.nr_xcrs > KVM_MAX_XCRS) {
    return Err("xcrs: nr_xcrs " + std::to_string(s.xcrs.nr_xcrs) + ", at most " +
               std::to_string(KVM_MAX_XCRS));
  }
  return {};
}

Result<void> ValidateVmState(const VmState& s) {
  struct Chip {
    const kvm_irqchip* chip;
    uint32_t id;
    const char* name;
  };
  const Chip chips[] = {{&s.pic_master, KVM_IRQCHIP_PIC_MASTER, "pic_master"},
                        {&s.pic_slave, KVM_IRQCHIP_PIC_SLAVE, "pic_slave"},
                        {&s.ioapic, KVM_IRQCHIP_IOAPIC, "ioapic"}};
  for (const Chip& c : chips) {
    if (c.chip->chip_id != c.id) {
      return Err(std::string(c.name) + ": chip_id " + std::to_string(c.chip->chip_id) +
                 ", expected " + std::to_string(c.id));
    }
  }
  return {};
}

Result<void> CheckCpuidCompatible(std::span<const kvm_cpuid_entry2> saved,
                                  std::span<const kvm_cpuid_entry2> host_supported) {
  std::string saved_vendor = Vendor(saved);
  std::string host_vendor = Vendor(host_supported);
  if (!saved_vendor.empty() && saved_vendor != host_vendor) {
    return Err("CPUID: the snapshot was taken on a " + saved_vendor + " CPU, this host is " +
               (host_vendor.empty() ? "unknown" : host_vendor));
  }
  std::string problems;
  for (const FeatureWord& w : kFeatureWords) {
    const kvm_cpuid_entry2* s = FindCpuid(saved, w.function, w.index);
    if (s == nullptr) continue;
    const kvm_cpuid_entry2* h = FindCpuid(host_supported, w.function, w.index);
    uint32_t missing = Get(*s, w.reg) & ~w.ignored & ~(h ? Get(*h, w.reg) : 0u);
    if (missing == 0) continue;
    problems += (problems.empty() ? "" : "; ") + std::string("leaf 0x") + ToHex(w.function) + "." +
                std::to_string(w.index) + " " + w.name + " bits " + Hex32(missing) + " (bit " +
                BitList(missing) + ")";
  }
  if (!problems.empty()) {
    return Err("CPUID: the snapshot's guest uses features this host's KVM does not support: " +
               problems);
  }
  return {};
}

}  // namespace kite
