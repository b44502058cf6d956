// The boot CPU's initial state: the GDT, identity page tables, and the registers for the two
// entry modes. The values are pure functions of the mode so unit tests check them without KVM.
//
// GDT at layout::kGdtAddr (selectors as Linux's boot code expects: __BOOT_CS 0x10, __BOOT_DS
// 0x18):
//   0x00 null   0x08 32-bit code (PVH entry)   0x10 64-bit code   0x18 data   0x20 TSS (16 bytes)
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

inline constexpr uint16_t kBootCs32 = 0x08;
inline constexpr uint16_t kBootCs = 0x10;
inline constexpr uint16_t kBootDs = 0x18;
inline constexpr uint16_t kBootTss = 0x20;

inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Et = 1ull << 4;
inline constexpr uint64_t kCr0Ne = 1ull << 5;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;

// Page-table entry bits.
inline constexpr uint64_t kPtePresent = 1ull << 0;
inline constexpr uint64_t kPteWritable = 1ull << 1;
inline constexpr uint64_t kPteLarge = 1ull << 7;  // PS: a 2 MiB page in a PD entry

// The GDT: 6 descriptors (the TSS one takes two slots in long mode).
std::array<uint64_t, 6> BuildGdt();

// The cached (hidden) part of a segment register as the CPU would load it from `descriptor`.
kvm_segment SegmentFromDescriptor(uint64_t descriptor, uint16_t selector);

// Writes the GDT and an empty IDT.
[[nodiscard]] Result<void> WriteGdt(const GuestMemory& memory);
// Writes the PML4 at kPml4Addr, one PDPT and four PDs mapping [0, 4 GiB) 1:1 with 2 MiB pages.
[[nodiscard]] Result<void> WriteIdentityPageTables(const GuestMemory& memory);

// Register values for a 64-bit entry at `entry` with rsi = `zero_page`, and for a PVH 32-bit
// entry with ebx = `start_info`. Only the fields named in cpu_setup.cc are changed in sregs.
void SetLinux64Registers(uint64_t entry, uint64_t zero_page, kvm_regs* regs, kvm_sregs* sregs);
void SetPvhRegisters(uint64_t entry, uint64_t start_info, kvm_regs* regs, kvm_sregs* sregs);

}  // namespace kite::boot
