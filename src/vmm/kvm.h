// Thin wrappers over the /dev/kvm ioctls: the system (/dev/kvm), a VM and a vCPU.
//
// Each wrapper owns its file descriptor and turns failed ioctls into Errors naming the
// operation. Nothing here knows about booting or devices; vm.cc and vcpu.cc put them together.
// A VcpuFd is used by its own vCPU thread only, except RequestImmediateExit(), which any thread
// may call to make the next (or current, together with a signal) KVM_RUN return.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "vmm/guest_memory.h"

namespace kite {

class VmFd;
class VcpuFd;

class KvmSystem {
 public:
  // Opens /dev/kvm (or `path`), checks API version 12 and the capabilities kite needs. Errors
  // say how to fix the host ("load kvm_intel or kvm_amd", "add your user to the kvm group").
  static Result<KvmSystem> Open(const char* path = "/dev/kvm");

  Result<VmFd> CreateVm() const;
  // KVM_CHECK_EXTENSION: > 0 when supported (some capabilities return a count).
  int CheckExtension(int capability) const;
  Result<std::vector<kvm_cpuid_entry2>> GetSupportedCpuid() const;
  // KVM_GET_MSR_INDEX_LIST: every MSR KVM can save and restore (msrs_to_save + emulated).
  Result<std::vector<uint32_t>> GetMsrIndexList() const;
  int fd() const { return fd_.get(); }

 private:
  explicit KvmSystem(UniqueFd fd, int vcpu_mmap_size)
      : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
};

class VmFd {
 public:
  VmFd(UniqueFd fd, int vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

  // One KVM memory slot per GuestMemory region (slot numbers from 0).
  Result<void> MapMemory(const GuestMemory& memory);
  // The three pages KVM needs for real-mode emulation on Intel, and the EPT identity map page.
  Result<void> SetTssAddr(uint64_t addr);
  Result<void> SetIdentityMapAddr(uint64_t addr);
  // In-kernel PIC + IOAPIC + LAPICs, then the PIT (speaker port as a dummy).
  Result<void> CreateIrqchip();
  Result<void> CreatePit();
  // KVM_IRQ_LINE: sets the level of a GSI on the in-kernel irqchip. Thread-safe.
  Result<void> SetIrqLine(uint32_t gsi, bool level) const;
  // eventfd registrations for devices served by the event loop. With `datamatch`, only
  // writes of that value signal the eventfd (virtio-mmio QueueNotify: one eventfd per queue).
  Result<void> RegisterIoeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio,
                                 std::optional<uint64_t> datamatch = std::nullopt);
  Result<void> UnregisterIoeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio,
                                   std::optional<uint64_t> datamatch = std::nullopt);
  Result<void> RegisterIrqfd(int eventfd, uint32_t gsi);
  Result<void> UnregisterIrqfd(int eventfd, uint32_t gsi);
  // KVM_SET_GSI_ROUTING: replaces the whole routing table (so `routes` must hold the irqchip
  // routes too: DefaultIrqchipRoutes). Thread-safe (KVM serialises it); it waits for an SRCU
  // grace period, so call it when a route changes, not per interrupt.
  Result<void> SetGsiRouting(std::span<const kvm_irq_routing_entry> routes);

  Result<VcpuFd> CreateVcpu(uint32_t index) const;

  // KVM_CHECK_EXTENSION on the VM (KVM_CAP_XSAVE2 must be asked here: its size is per VM).
  int CheckExtension(int capability) const;
  // The size of the vCPUs' XSAVE area: KVM_CAP_XSAVE2's answer, at least sizeof(kvm_xsave).
  size_t XsaveSize() const;
  // kvmclock: KVM_GET_CLOCK / KVM_SET_CLOCK (flags: KVM_CLOCK_REALTIME to use `realtime`).
  Result<kvm_clock_data> GetClock() const;
  Result<void> SetClock(const kvm_clock_data& clock);
  // One in-kernel irqchip: KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE or KVM_IRQCHIP_IOAPIC.
  Result<kvm_irqchip> GetIrqchip(uint32_t chip_id) const;
  Result<void> SetIrqchip(const kvm_irqchip& chip);
  Result<kvm_pit_state2> GetPit2() const;
  Result<void> SetPit2(const kvm_pit_state2& pit);
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
};

// The routing KVM gives a VM with an in-kernel irqchip (arch/x86/kvm/irq_comm.c
// default_routing): GSI n → IOAPIC pin n for 0..23, and GSIs 0..15 also to the PICs (master
// pins 0-7, slave pins 8-15). A table set with SetGsiRouting starts from these.
inline constexpr uint32_t kIoapicPins = 24;
std::vector<kvm_irq_routing_entry> DefaultIrqchipRoutes();
// An MSI route: a message to `address` with `data` when `gsi` is raised (x86: no device id).
kvm_irq_routing_entry MsiRoute(uint32_t gsi, uint64_t address, uint32_t data);

class VcpuFd {
 public:
  VcpuFd(UniqueFd fd, uint32_t index, kvm_run* run, size_t run_size);
  VcpuFd(VcpuFd&& other) noexcept;
  VcpuFd& operator=(VcpuFd&&) = delete;
  VcpuFd(const VcpuFd&) = delete;
  ~VcpuFd();

  // KVM_RUN once. Returns false (no error) when interrupted by a signal or immediate_exit;
  // true when kvm_run holds an exit to handle.
  Result<bool> Run();
  void RequestImmediateExit();
  void ClearImmediateExit();

  // The whole shared kvm_run mapping (PIO data lives past the struct, at io.data_offset).
  std::span<uint8_t> run_area() const { return {reinterpret_cast<uint8_t*>(run_), run_size_}; }
  uint32_t index() const { return index_; }

  Result<kvm_regs> GetRegs() const;
  Result<void> SetRegs(const kvm_regs& regs);
  Result<kvm_sregs> GetSregs() const;
  Result<void> SetSregs(const kvm_sregs& sregs);
  Result<kvm_fpu> GetFpu() const;
  Result<void> SetFpu(const kvm_fpu& fpu);
  Result<kvm_lapic_state> GetLapic() const;
  Result<void> SetLapic(const kvm_lapic_state& lapic);
  Result<kvm_vcpu_events> GetEvents() const;
  Result<void> SetEvents(const kvm_vcpu_events& events);
  Result<kvm_mp_state> GetMpState() const;
  Result<void> SetMpState(uint32_t mp_state);
  Result<void> SetMpState(const kvm_mp_state& mp_state);
  Result<void> SetCpuid(std::span<const kvm_cpuid_entry2> entries);
  // KVM_GET_CPUID2: the CPUID KVM uses for this vCPU (with its runtime bits, e.g. OSXSAVE).
  Result<std::vector<kvm_cpuid_entry2>> GetCpuid() const;
  // The XSAVE area as bytes: `size` from VmFd::XsaveSize(); KVM_GET_XSAVE2 when it is larger
  // than struct kvm_xsave (4096 bytes), else KVM_GET_XSAVE. SetXsave needs that same size.
  Result<std::vector<uint8_t>> GetXsave(size_t size) const;
  Result<void> SetXsave(std::span<const uint8_t> xsave);
  Result<kvm_xcrs> GetXcrs() const;
  Result<void> SetXcrs(const kvm_xcrs& xcrs);
  Result<kvm_debugregs> GetDebugRegs() const;
  Result<void> SetDebugRegs(const kvm_debugregs& debugregs);
  // The guest TSC frequency in kHz (KVM_GET_TSC_KHZ / KVM_SET_TSC_KHZ).
  Result<uint32_t> GetTscKhz() const;
  Result<void> SetTscKhz(uint32_t khz);
  // KVM_KVMCLOCK_CTRL: tells the guest's kvmclock it was stopped (no soft-lockup warnings).
  // Succeeds when the guest does not use kvmclock (KVM answers EINVAL then).
  Result<void> KvmclockCtrl();
  // Sets (index, value) pairs; fails naming the first MSR KVM refused.
  Result<void> SetMsrs(std::span<const kvm_msr_entry> msrs);
  // Reads the MSRs named by `indices`; fails naming the first one KVM cannot read.
  Result<std::vector<kvm_msr_entry>> GetMsrs(std::span<const uint32_t> indices) const;
  // Guest-virtual → guest-physical through the vCPU's current page tables.
  Result<uint64_t> Translate(uint64_t linear) const;
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  uint32_t index_ = 0;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
};

}  // namespace kite
