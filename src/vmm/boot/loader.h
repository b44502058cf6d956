// Kernel loading and the boot CPU's initial state: the API the VMM calls to boot a guest.
//
//   Result<BootPlan> plan = LoadKernel(memory, {.kernel_path = ..., .cmdline = ...});
//   kvm_regs regs{};  kvm_sregs sregs = /* KVM_GET_SREGS of vCPU 0 */;
//   TRY(SetupBootCpu(memory, *plan, &regs, &sregs));   // then KVM_SET_SREGS, KVM_SET_REGS
//
// Supported kernels: an uncompressed x86_64 ELF vmlinux (entered through its PVH note when it
// has one and `prefer_pvh` is set, otherwise in 64-bit mode at e_entry with the Linux 64-bit
// boot protocol), and a bzImage (boot protocol 2.12+, 64-bit entry at load address + 0x200).
// Every field read from a kernel, initrd or the command line is checked; a bad file gives an
// Error naming the file and the field, and nothing is written to guest memory for it.
// See docs/BOOT.md.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

struct KernelSpec {
  std::string kernel_path{};
  std::string initrd_path{};  // empty = no initrd
  std::string cmdline{};
  uint64_t acpi_rsdp = 0;  // guest-physical address of the RSDP; 0 = no ACPI
  // For an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note: use the PVH entry (true), or the Linux
  // 64-bit entry at e_entry (false). Ignored for kernels without the note and for bzImages.
  bool prefer_pvh = true;
};

enum class EntryMode {
  kLinux64,  // 64-bit long mode at `entry`, rsi = zero page (boot_params)
  kPvh,      // 32-bit protected mode, paging off, at `entry`, ebx = hvm_start_info
};

struct BootPlan {
  EntryMode mode = EntryMode::kLinux64;
  GuestAddr entry{};
  GuestAddr boot_info{};      // the zero page (kLinux64) or hvm_start_info (kPvh)
  std::string kernel_kind{};  // "ELF vmlinux", "ELF vmlinux (PVH)", "bzImage"
  uint64_t kernel_end = 0;    // one past the highest guest-physical byte the kernel needs
  GuestAddr initrd_addr{};    // where the initrd was placed (0 with no initrd)
  uint64_t initrd_size = 0;
};

// Loads the kernel (and initrd, and command line) into guest memory and writes boot_params with
// the e820 map (kLinux64) or hvm_start_info with its memory map and module list (kPvh).
[[nodiscard]] Result<BootPlan> LoadKernel(const GuestMemory& memory, const KernelSpec& spec);

// Writes the GDT and the identity page tables (first 4 GiB, 2 MiB pages) to guest memory and
// sets the boot CPU's registers for the plan's entry mode. `regs` is overwritten; in `sregs`
// the control registers, EFER, segments, GDT and IDT are set and the rest (APIC base,
// interrupt bitmap) is kept, so pass in what KVM_GET_SREGS returned.
[[nodiscard]] Result<void> SetupBootCpu(const GuestMemory& memory, const BootPlan& plan,
                                        kvm_regs* regs, kvm_sregs* sregs);

}  // namespace kite::boot
