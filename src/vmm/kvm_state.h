// The state KVM holds for a vCPU and for the VM (irqchips, PIT, kvmclock), as plain data, and
// the ordered save and restore of it: Firecracker's order and fixes (docs/SNAPSHOTS.md,
// "vCPU and VM state"). The snapshot file is untrusted: ValidateVcpuState, ValidateVmState and
// CheckCpuidCompatible refuse what this host cannot take before any vCPU is touched.
//
// All vCPUs must be out of KVM_RUN while their state is saved or restored, and each must have
// completed the exit it last returned (KVM_RUN with immediate_exit, as Vcpu's pause does):
// else a port/MMIO write is redone after restore. The caller may be any thread.
// Order for a whole VM: devices, then SaveVcpuState for each vCPU, then SaveVmState. Restore:
// RestoreVcpuState for each vCPU, RestoreVmState, then devices; vCPUs run only after that.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace kite {

class VmFd;
class VcpuFd;

inline constexpr uint32_t kMsrIa32TscDeadline = 0x6e0;
inline constexpr uint32_t kMsrIa32McgCtl = 0x17b;

// Bounds for untrusted snapshot contents.
inline constexpr size_t kMaxSavedMsrs = 1024;
inline constexpr size_t kMaxSavedCpuidEntries = 256;
// KVM's own tolerance (and QEMU's) before the guest TSC must be scaled: 250 ppm.
inline constexpr uint32_t kTscTolerancePpm = 250;

struct VcpuState {
  kvm_mp_state mp_state{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<uint8_t> xsave;  // KVM's XSAVE area, HostKvm::xsave_size bytes
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  uint32_t tsc_khz = 0;  // 0: not known (KVM_GET_TSC_KHZ failed); never scaled then
  std::vector<kvm_cpuid_entry2> cpuid;
  std::vector<kvm_msr_entry> msrs;
  kvm_vcpu_events events{};
};

struct VmState {
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
};

// What this host's KVM offers for save/restore, read once per VM.
struct HostKvm {
  size_t xsave_size = 4096;     // KVM_CAP_XSAVE2's size; 4096 (struct kvm_xsave) without it
  bool tsc_control = false;     // KVM_CAP_TSC_CONTROL: KVM_SET_TSC_KHZ can scale the TSC
  bool clock_realtime = false;  // KVM_CAP_ADJUST_CLOCK reports KVM_CLOCK_REALTIME
};
HostKvm QueryHostKvm(const VmFd& vm);

// The MSRs worth saving: `host_list` (KVM_GET_MSR_INDEX_LIST) filtered by Firecracker's
// serializable ranges, without MCG_CTL. Pure.
std::vector<uint32_t> SerializableMsrs(std::span<const uint32_t> host_list);
// fix_zero_tsc_deadline_msr: a TSC_DEADLINE of 0 becomes the TSC value, or the restored vCPU
// may never get another timer interrupt. Pure.
void FixZeroTscDeadline(std::vector<kvm_msr_entry>& msrs);
// The MSRs in restore order: TSC_DEADLINE after everything else (after IA32_TSC). Pure.
std::vector<kvm_msr_entry> MsrsInRestoreOrder(std::span<const kvm_msr_entry> msrs);
// True when a guest TSC of `saved_khz` must be scaled on a host running at `host_khz`.
bool TscScalingRequired(uint32_t saved_khz, uint32_t host_khz);

// `msr_indices`: SerializableMsrs(KvmSystem::GetMsrIndexList()). `cpuid`: the CPUID the VMM
// set on this vCPU; empty reads it back with KVM_GET_CPUID2.
Result<VcpuState> SaveVcpuState(VcpuFd& vcpu, const HostKvm& host,
                                std::span<const uint32_t> msr_indices,
                                std::span<const kvm_cpuid_entry2> cpuid = {});
// Into a fresh vCPU (created, nothing set). Validates first: an invalid state touches nothing.
// A TSC frequency this host cannot provide is an ErrorKind::kKvmMissingCap error.
Result<void> RestoreVcpuState(VcpuFd& vcpu, const VcpuState& state, const HostKvm& host);

Result<VmState> SaveVmState(const VmFd& vm);
// Before any vCPU runs. `clock_realtime`: advance kvmclock by the wall time since the save
// (KVM_CLOCK_REALTIME), when the saved clock has it and this host supports it.
Result<void> RestoreVmState(VmFd& vm, const VmState& state, bool clock_realtime);

// Checks for untrusted state; errors name the field.
Result<void> ValidateVcpuState(const VcpuState& state, const HostKvm& host);
Result<void> ValidateVmState(const VmState& state);
// Refuses a saved guest CPUID with feature bits (leaves 1, 7.0, 0xd.1, 0x80000001) or a
// vendor this host's KVM_GET_SUPPORTED_CPUID lacks; the error names leaf, register and bits.
Result<void> CheckCpuidCompatible(std::span<const kvm_cpuid_entry2> saved,
                                  std::span<const kvm_cpuid_entry2> host_supported);

}  // namespace kite
