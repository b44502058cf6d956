// KVM ioctl numbers that <linux/kvm.h> gets wrong in C++, with the C-layout headers they
// encode. Shared by the KVM wrappers (vmm/kvm.cc) and the seccomp policy, which must allow
// exactly the numbers kite sends.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace kite {

// In C++ <linux/kvm.h>'s __DECLARE_FLEX_ARRAY (an empty struct before the array) gives
// struct kvm_cpuid2 and struct kvm_msrs a wrong layout: the empty struct takes a byte in C++,
// so `entries` sits at offset 12/16 instead of 8 and the ioctl numbers (which encode sizeof)
// change: KVM then answers EINVAL. kite uses these C-layout headers and ioctl numbers instead.
struct KvmCpuid2Header {
  uint32_t nent;
  uint32_t padding;
};
struct KvmMsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(KvmCpuid2Header) == 8 && sizeof(KvmMsrsHeader) == 8);
constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmCpuid2Header);
constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, KvmCpuid2Header);
constexpr unsigned long kKvmSetMsrs = _IOW(KVMIO, 0x89, KvmMsrsHeader);
constexpr unsigned long kKvmGetMsrs = _IOWR(KVMIO, 0x88, KvmMsrsHeader);
constexpr unsigned long kKvmGetCpuid2 = _IOWR(KVMIO, 0x91, KvmCpuid2Header);
// The same for struct kvm_msr_list (4-byte header) and struct kvm_xsave (4096 bytes, then a
// flexible array that KVM_GET_XSAVE2 fills up to KVM_CAP_XSAVE2's size).
struct KvmMsrListHeader {
  uint32_t nmsrs;
};
struct KvmXsaveRegion {
  uint32_t region[1024];
};
static_assert(sizeof(KvmMsrListHeader) == 4 && sizeof(KvmXsaveRegion) == 4096);
constexpr unsigned long kKvmGetMsrIndexList = _IOWR(KVMIO, 0x02, KvmMsrListHeader);
constexpr unsigned long kKvmGetXsave = _IOR(KVMIO, 0xa4, KvmXsaveRegion);
constexpr unsigned long kKvmSetXsave = _IOW(KVMIO, 0xa5, KvmXsaveRegion);
constexpr unsigned long kKvmGetXsave2 = _IOR(KVMIO, 0xcf, KvmXsaveRegion);
// And struct kvm_irq_routing (nr, flags, then the entries).
struct KvmIrqRoutingHeader {
  uint32_t nr;
  uint32_t flags;
};
static_assert(sizeof(KvmIrqRoutingHeader) == 8 && sizeof(kvm_irq_routing_entry) == 48);
constexpr unsigned long kKvmSetGsiRouting = _IOW(KVMIO, 0x6a, KvmIrqRoutingHeader);

}  // namespace kite
