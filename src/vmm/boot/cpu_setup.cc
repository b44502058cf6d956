// Boot CPU state for the Linux 64-bit boot protocol (Documentation/arch/x86/boot.rst, "64-bit
// Boot Protocol": long mode, paging on with the kernel, zero page and command line identity
// mapped, __BOOT_CS/__BOOT_DS flat segments, interrupts off, rsi = boot_params) and for the
// PVH ABI (xen/include/public/arch-x86/hvm/start_info.h: 32-bit protected mode, paging off,
// CR0.PE only, CR4 = 0, flat 4 GiB cs/ds/es/ss, a TR with base 0 limit 0x67, ebx = start_info).
#include "vmm/boot/cpu_setup.h"

#include <cstring>

#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

// A segment descriptor from its parts (Intel SDM Vol. 3A 3.4.5). `flags` holds the access
// byte in bits 0-7 and the G/DB/L/AVL nibble in bits 12-15.
constexpr uint64_t Descriptor(uint16_t flags, uint32_t base, uint32_t limit) {
  return (uint64_t{base & 0xff000000u} << 32) | (uint64_t{base & 0x00ffffffu} << 16) |
         (uint64_t{limit & 0x000f0000u} << 32) | uint64_t{limit & 0xffffu} |
         (uint64_t{flags & 0xf0ffu} << 40);
}

constexpr uint64_t kCode32 = Descriptor(0xc09b, 0, 0xfffff);  // G, D, P, S, exec/read, accessed
constexpr uint64_t kCode64 = Descriptor(0xa09b, 0, 0xfffff);  // G, L, P, S, exec/read, accessed
constexpr uint64_t kData = Descriptor(0xc093, 0, 0xfffff);    // G, B, P, S, read/write, accessed
constexpr uint64_t kTss = Descriptor(0x008b, 0, 0x67);        // P, busy 32/64-bit TSS
constexpr uint64_t kPageSize = 4096;

void SetFlatSegments(uint16_t cs, kvm_sregs* sregs) {
  std::array<uint64_t, 6> gdt = BuildGdt();
  sregs->cs = SegmentFromDescriptor(gdt[cs / 8], cs);
  kvm_segment data = SegmentFromDescriptor(gdt[kBootDs / 8], kBootDs);
  sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
  sregs->tr = SegmentFromDescriptor(gdt[kBootTss / 8], kBootTss);
  sregs->ldt = kvm_segment{};
  sregs->ldt.type = 2;  // LDT, unusable: nothing loads it before the kernel's own lldt
  sregs->ldt.unusable = 1;
  sregs->gdt = {.base = layout::kGdtAddr, .limit = sizeof(gdt) - 1, .padding = {}};
  sregs->idt = {.base = layout::kIdtAddr, .limit = 0, .padding = {}};
}

}  // namespace

std::array<uint64_t, 6> BuildGdt() {
  return {0, kCode32, kCode64, kData, kTss, 0};
}

kvm_segment SegmentFromDescriptor(uint64_t d, uint16_t selector) {
  kvm_segment s{};
  s.base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((d & 0xffff) | (((d >> 48) & 0xf) << 16));
  s.g = (d >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = selector;
  s.type = (d >> 40) & 0xf;
  s.s = (d >> 44) & 1;
  s.dpl = (d >> 45) & 3;
  s.present = (d >> 47) & 1;
  s.avl = (d >> 52) & 1;
  s.l = (d >> 53) & 1;
  s.db = (d >> 54) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

Result<void> WriteGdt(const GuestMemory& memory) {
  std::array<uint64_t, 6> gdt = BuildGdt();
  TRY_CTX(memory.WriteObj(GuestAddr(layout::kGdtAddr), gdt), "writing the GDT");
  TRY_CTX(memory.WriteObj<uint64_t>(GuestAddr(layout::kIdtAddr), 0), "writing the IDT");
  return {};
}

Result<void> WriteIdentityPageTables(const GuestMemory& memory) {
  constexpr uint64_t kTableFlags = kPtePresent | kPteWritable;
  std::array<uint64_t, 512> table{};
  table[0] = layout::kPdptAddr | kTableFlags;
  TRY_CTX(memory.WriteObj(GuestAddr(layout::kPml4Addr), table), "writing the PML4");
  table.fill(0);
  for (uint64_t i = 0; i < 4; ++i) table[i] = (layout::kPdAddr + i * kPageSize) | kTableFlags;
  TRY_CTX(memory.WriteObj(GuestAddr(layout::kPdptAddr), table), "writing the PDPT");
  for (uint64_t gib = 0; gib < 4; ++gib) {
    for (uint64_t i = 0; i < 512; ++i) {
      table[i] = ((gib << 30) + (i << 21)) | kTableFlags | kPteLarge;
    }
    TRY_CTX(memory.WriteObj(GuestAddr(layout::kPdAddr + gib * kPageSize), table),
            "writing a page directory");
  }
  return {};
}

void SetLinux64Registers(uint64_t entry, uint64_t zero_page, kvm_regs* regs, kvm_sregs* sregs) {
  *regs = kvm_regs{};
  regs->rflags = 0x2;  // bit 1 is reserved-one; IF off
  regs->rip = entry;
  regs->rsi = zero_page;
  SetFlatSegments(kBootCs, sregs);
  sregs->cr0 = kCr0Pe | kCr0Et | kCr0Ne | kCr0Pg;
  sregs->cr3 = layout::kPml4Addr;
  sregs->cr4 = kCr4Pae;
  sregs->efer = kEferLme | kEferLma;
}

void SetPvhRegisters(uint64_t entry, uint64_t start_info, kvm_regs* regs, kvm_sregs* sregs) {
  *regs = kvm_regs{};
  regs->rflags = 0x2;
  regs->rip = entry;
  regs->rbx = start_info;
  SetFlatSegments(kBootCs32, sregs);
  sregs->cr0 = kCr0Pe | kCr0Et;  // ET is read-only 1 on every CPU since the 486
  sregs->cr3 = 0;
  sregs->cr4 = 0;
  sregs->efer = 0;
}

Result<void> SetupBootCpu(const GuestMemory& memory, const BootPlan& plan, kvm_regs* regs,
                          kvm_sregs* sregs) {
  TRY(WriteGdt(memory));
  if (plan.mode == EntryMode::kPvh) {
    SetPvhRegisters(plan.entry.value, plan.boot_info.value, regs, sregs);
    return {};
  }
  TRY(WriteIdentityPageTables(memory));
  SetLinux64Registers(plan.entry.value, plan.boot_info.value, regs, sregs);
  return {};
}

}  // namespace kite::boot
