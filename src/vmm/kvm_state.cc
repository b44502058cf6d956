// Saving and restoring KVM's vCPU and VM state in Firecracker's order. See kvm_state.h and
// docs/SNAPSHOTS.md; the checks of untrusted state are in kvm_state_check.cc.
#include "vmm/kvm_state.h"

#include <algorithm>
#include <string>

#include "base/log.h"
#include "base/units.h"
#include "vmm/cpu_setup.h"
#include "vmm/kvm.h"

namespace kite {
namespace {

struct MsrRange {
  uint32_t base;
  uint32_t count;
  bool Contains(uint32_t msr) const { return msr >= base && msr - base < count; }
};

// Firecracker's SERIALIZABLE_MSR_RANGES (arch/x86_64/msr.rs), in MSR order.
constexpr MsrRange kSerializableMsrs[] = {
    {0x10, 1},            // IA32_TSC
    {0x11, 2},            // MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME (old kvmclock)
    {0x1b, 1},            // IA32_APICBASE
    {0x3b, 1},            // IA32_TSC_ADJUST
    {0x48, 1},            // IA32_SPEC_CTRL
    {0x122, 1},           // IA32_TSX_CTRL
    {0x174, 3},           // IA32_SYSENTER_CS, _ESP, _EIP
    {0x1a0, 1},           // IA32_MISC_ENABLE
    {0x200, 0x100},       // MTRRs: physical base/mask, fixed ranges, PAT (0x277), MTRRdefType
    {0x400, 32 * 4},      // IA32_MCi_CTL/STATUS/ADDR/MISC for KVM's 32 banks
    {0x6e0, 1},           // IA32_TSC_DEADLINE
    {0x800, 0x100},       // x2APIC registers
    {0xda0, 1},           // IA32_XSS: without it XRSTORS in the guest raises #GP
    {0x4b564d00, 0x100},  // KVM paravirtual: kvmclock, async PF, steal time, PV EOI, ...
    {0xc0000080, 1},      // EFER
    {0xc0000081, 4},      // STAR, LSTAR, CSTAR, SYSCALL_MASK
    {0xc0000100, 3},      // FS_BASE, GS_BASE, KERNEL_GS_BASE
    {0xc0000103, 1},      // TSC_AUX
};

// KVM_GET_MSRS and KVM_SET_MSRS take at most 255 entries per call (MAX_IO_MSRS).
constexpr size_t kMsrsPerIoctl = 128;

Result<std::vector<kvm_msr_entry>> GetMsrsChunked(const VcpuFd& vcpu,
                                                  std::span<const uint32_t> indices) {
  std::vector<kvm_msr_entry> out;
  out.reserve(indices.size());
  for (size_t i = 0; i < indices.size(); i += kMsrsPerIoctl) {
    auto chunk = indices.subspan(i, std::min(kMsrsPerIoctl, indices.size() - i));
    std::vector<kvm_msr_entry> got = TRY(vcpu.GetMsrs(chunk));
    out.insert(out.end(), got.begin(), got.end());
  }
  return out;
}

Result<void> SetMsrsChunked(VcpuFd& vcpu, std::span<const kvm_msr_entry> msrs) {
  for (size_t i = 0; i < msrs.size(); i += kMsrsPerIoctl) {
    TRY(vcpu.SetMsrs(msrs.subspan(i, std::min(kMsrsPerIoctl, msrs.size() - i))));
  }
  return {};
}

// KVM_SET_TSC_KHZ before anything else when the saved frequency is not this host's.
Result<void> RestoreTscFrequency(VcpuFd& vcpu, uint32_t saved_khz, const HostKvm& host) {
  if (saved_khz == 0) return {};
  uint32_t host_khz = TRY(vcpu.GetTscKhz());
  if (!TscScalingRequired(saved_khz, host_khz)) return {};
  if (!host.tsc_control) {
    return Err(ErrorKind::kKvmMissingCap,
               "the snapshot's TSC runs at " + std::to_string(saved_khz) + " kHz, this host's at " +
                   std::to_string(host_khz) +
                   " kHz, and its KVM cannot scale the TSC (no KVM_CAP_TSC_CONTROL)");
  }
  return vcpu.SetTscKhz(saved_khz);
}

}  // namespace

HostKvm QueryHostKvm(const VmFd& vm) {
  HostKvm host;
  host.xsave_size = vm.XsaveSize();
  host.tsc_control = vm.CheckExtension(KVM_CAP_TSC_CONTROL) > 0;
  int adjust = vm.CheckExtension(KVM_CAP_ADJUST_CLOCK);
  host.clock_realtime = adjust > 0 && (adjust & KVM_CLOCK_REALTIME) != 0;
  return host;
}

std::vector<uint32_t> SerializableMsrs(std::span<const uint32_t> host_list) {
  std::vector<uint32_t> out;
  for (uint32_t msr : host_list) {
    if (msr == kMsrIa32McgCtl) continue;
    bool wanted = std::any_of(std::begin(kSerializableMsrs), std::end(kSerializableMsrs),
                              [msr](const MsrRange& r) { return r.Contains(msr); });
    if (wanted && std::find(out.begin(), out.end(), msr) == out.end()) out.push_back(msr);
  }
  return out;
}

void FixZeroTscDeadline(std::vector<kvm_msr_entry>& msrs) {
  auto tsc = std::find_if(msrs.begin(), msrs.end(),
                          [](const kvm_msr_entry& e) { return e.index == kMsrIa32Tsc; });
  if (tsc == msrs.end()) return;
  for (kvm_msr_entry& e : msrs) {
    if (e.index == kMsrIa32TscDeadline && e.data == 0) e.data = tsc->data;
  }
}

std::vector<kvm_msr_entry> MsrsInRestoreOrder(std::span<const kvm_msr_entry> msrs) {
  std::vector<kvm_msr_entry> out(msrs.begin(), msrs.end());
  std::stable_partition(out.begin(), out.end(),
                        [](const kvm_msr_entry& e) { return e.index != kMsrIa32TscDeadline; });
  return out;
}

bool TscScalingRequired(uint32_t saved_khz, uint32_t host_khz) {
  uint64_t diff = saved_khz > host_khz ? saved_khz - host_khz : host_khz - saved_khz;
  // diff / host > 250 / 1e6, in integers.
  return diff * 1'000'000 > uint64_t{kTscTolerancePpm} * host_khz;
}

Result<VcpuState> SaveVcpuState(VcpuFd& vcpu, const HostKvm& host,
                                std::span<const uint32_t> msr_indices,
                                std::span<const kvm_cpuid_entry2> cpuid) {
  VcpuState s;
  // MP state first: KVM_GET_MP_STATE runs kvm_apic_accept_events(), which may change the LAPIC.
  s.mp_state = TRY(vcpu.GetMpState());
  s.regs = TRY(vcpu.GetRegs());
  s.sregs = TRY(vcpu.GetSregs());
  s.xsave = TRY(vcpu.GetXsave(host.xsave_size));
  s.xcrs = TRY(vcpu.GetXcrs());
  s.debugregs = TRY(vcpu.GetDebugRegs());
  s.lapic = TRY(vcpu.GetLapic());
  if (auto khz = vcpu.GetTscKhz(); khz) {
    s.tsc_khz = *khz;
  } else {
    KITE_LOG(Warn, "vCPU %u: %s: the TSC frequency is not saved", vcpu.index(),
             khz.error().message().c_str());
  }
  if (cpuid.empty()) {
    s.cpuid = TRY(vcpu.GetCpuid());
  } else {
    s.cpuid.assign(cpuid.begin(), cpuid.end());
  }
  s.msrs = TRY(GetMsrsChunked(vcpu, msr_indices));
  FixZeroTscDeadline(s.msrs);
  // Events last: they are only consistent once nothing else changes the vCPU.
  s.events = TRY(vcpu.GetEvents());
  return s;
}

Result<void> RestoreVcpuState(VcpuFd& vcpu, const VcpuState& s, const HostKvm& host) {
  TRY(ValidateVcpuState(s, host));
  TRY(RestoreTscFrequency(vcpu, s.tsc_khz, host));
  // CPUID first: whether this is the BSP and which MSRs are valid depend on it.
  TRY(vcpu.SetCpuid(s.cpuid));
  TRY(vcpu.SetMpState(s.mp_state));
  // Regs before events (KVM_SET_REGS clears pending exceptions), sregs before the LAPIC
  // (they carry the APIC base).
  TRY(vcpu.SetRegs(s.regs));
  TRY(vcpu.SetSregs(s.sregs));
  TRY(vcpu.SetXsave(s.xsave));
  TRY(vcpu.SetXcrs(s.xcrs));
  TRY(vcpu.SetDebugRegs(s.debugregs));
  // The LAPIC before the MSRs: TSC_DEADLINE only restores into a configured LAPIC.
  TRY(vcpu.SetLapic(s.lapic));
  // TSC_DEADLINE after IA32_TSC (Firecracker #4099: processes stuck after resume).
  std::vector<kvm_msr_entry> msrs = MsrsInRestoreOrder(s.msrs);
  auto deferred = std::find_if(msrs.begin(), msrs.end(), [](const kvm_msr_entry& e) {
    return e.index == kMsrIa32TscDeadline;
  });
  size_t first_deferred = static_cast<size_t>(deferred - msrs.begin());
  std::span<const kvm_msr_entry> all(msrs);
  TRY(SetMsrsChunked(vcpu, all.first(first_deferred)));
  TRY(SetMsrsChunked(vcpu, all.subspan(first_deferred)));
  TRY(vcpu.SetEvents(s.events));
  // Tell a kvmclock guest it was stopped, so its watchdogs do not fire on resume.
  TRY(vcpu.KvmclockCtrl());
  return {};
}

Result<VmState> SaveVmState(const VmFd& vm) {
  VmState s;
  s.pit = TRY(vm.GetPit2());
  s.clock = TRY(vm.GetClock());
  s.pic_master = TRY(vm.GetIrqchip(KVM_IRQCHIP_PIC_MASTER));
  s.pic_slave = TRY(vm.GetIrqchip(KVM_IRQCHIP_PIC_SLAVE));
  s.ioapic = TRY(vm.GetIrqchip(KVM_IRQCHIP_IOAPIC));
  return s;
}

Result<void> RestoreVmState(VmFd& vm, const VmState& s, bool clock_realtime) {
  TRY(ValidateVmState(s));
  TRY(vm.SetPit2(s.pit));
  kvm_clock_data clock = s.clock;
  // KVM_CLOCK_REALTIME only when asked, saved, and supported here; no other flag is an input.
  bool realtime = clock_realtime && (s.clock.flags & KVM_CLOCK_REALTIME) != 0 &&
                  QueryHostKvm(vm).clock_realtime;
  clock.flags = realtime ? KVM_CLOCK_REALTIME : 0;
  TRY(vm.SetClock(clock));
  TRY(vm.SetIrqchip(s.pic_master));
  TRY(vm.SetIrqchip(s.pic_slave));
  TRY(vm.SetIrqchip(s.ioapic));
  return {};
}

}  // namespace kite
