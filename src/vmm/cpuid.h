// Guest CPUID: the host's KVM_GET_SUPPORTED_CPUID list, made per-vCPU (APIC IDs, x2APIC
// topology with one thread per core and all vCPUs as cores of one package, cache sharing),
// marked as a KVM guest (hypervisor bit, "KVMKVMKVM" leaf 0x40000000) and filtered through a
// CPU template. A pure transformation, unit-tested on synthetic lists.
//
// Note (MACHINE.md): on a host whose KVM emulates guest code, KVM_SET_CPUID2 is ignored and
// the guest sees the host's CPUID; host_quirks.h covers that case on the kernel command line.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kite {

enum class CpuTemplate {
  kHost,     // everything the host KVM supports
  kMinimal,  // hides features that tie a guest to one host or are not virtualized well
             // (AVX-512, AMX, TSX, SGX, PKU, MPX, Intel PT, LA57, monitor/mwait, VMX/SVM, ...)
};

Result<CpuTemplate> ParseCpuTemplate(std::string_view name);
const char* CpuTemplateName(CpuTemplate t);

struct CpuidParams {
  uint32_t vcpu_index = 0;  // also the APIC ID
  uint32_t num_vcpus = 1;
  CpuTemplate cpu_template = CpuTemplate::kHost;
};

std::vector<kvm_cpuid_entry2> BuildVcpuCpuid(std::span<const kvm_cpuid_entry2> supported,
                                             const CpuidParams& params);

// The entry for (function, index), or nullptr. Entries without KVM_CPUID_FLAG_SIGNIFCANT_INDEX
// match any index.
const kvm_cpuid_entry2* FindCpuid(std::span<const kvm_cpuid_entry2> entries, uint32_t function,
                                  uint32_t index = 0);

}  // namespace kite
