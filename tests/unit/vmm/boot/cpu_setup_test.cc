// Boot CPU state: GDT descriptors, the cached segment values, page tables and registers for
// both entry modes.
#include "vmm/boot/cpu_setup.h"

#include <gtest/gtest.h>

#include "test_images.h"
#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

TEST(BootGdtTest, Build_CodeAndDataDescriptorsAsLinuxExpects) {
  std::array<uint64_t, 6> gdt = BuildGdt();
  EXPECT_EQ(gdt[0], 0u);
  EXPECT_EQ(gdt[kBootCs32 / 8], 0x00cf9b000000ffffu);
  EXPECT_EQ(gdt[kBootCs / 8], 0x00af9b000000ffffu);
  EXPECT_EQ(gdt[kBootDs / 8], 0x00cf93000000ffffu);
  EXPECT_EQ(gdt[kBootTss / 8], 0x00008b0000000067u);
  EXPECT_EQ(gdt[5], 0u);  // upper half of the 16-byte TSS descriptor
}

TEST(BootSegmentTest, FromDescriptor_Code64) {
  kvm_segment s = SegmentFromDescriptor(0x00af9b000000ffff, kBootCs);
  EXPECT_EQ(s.base, 0u);
  EXPECT_EQ(s.limit, 0xffffffffu);
  EXPECT_EQ(s.selector, 0x10);
  EXPECT_EQ(s.type, 0xb);
  EXPECT_EQ(s.present, 1);
  EXPECT_EQ(s.dpl, 0);
  EXPECT_EQ(s.db, 0);
  EXPECT_EQ(s.s, 1);
  EXPECT_EQ(s.l, 1);
  EXPECT_EQ(s.g, 1);
  EXPECT_EQ(s.unusable, 0);
}

TEST(BootSegmentTest, FromDescriptor_BaseAndByteGranularLimit) {
  kvm_segment s = SegmentFromDescriptor(0x12008b345678abcd, 0x20);
  EXPECT_EQ(s.base, 0x12345678u);
  EXPECT_EQ(s.limit, 0xabcdu);
  EXPECT_EQ(s.g, 0);
  EXPECT_EQ(s.s, 0);
  EXPECT_EQ(s.type, 0xb);
}

TEST(BootSegmentTest, FromDescriptor_NotPresentIsUnusable) {
  EXPECT_EQ(SegmentFromDescriptor(0, 0).unusable, 1);
}

TEST(BootPageTableTest, Write_IdentityMapsFirst4GiBWith2MiBPages) {
  GuestMemory memory = testing::MakeMemory();
  ASSERT_TRUE(WriteIdentityPageTables(memory).has_value());
  auto entry = [&](uint64_t table, uint64_t i) {
    return memory.ReadObj<uint64_t>(GuestAddr(table + i * 8)).value();
  };
  EXPECT_EQ(entry(layout::kPml4Addr, 0), layout::kPdptAddr | 0x3);
  EXPECT_EQ(entry(layout::kPml4Addr, 1), 0u);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(entry(layout::kPdptAddr, i), (layout::kPdAddr + i * 4096) | 0x3);
  }
  EXPECT_EQ(entry(layout::kPdptAddr, 4), 0u);
  EXPECT_EQ(entry(layout::kPdAddr, 0), 0x83u);
  EXPECT_EQ(entry(layout::kPdAddr, 8), 0x1000083u);                // 16 MiB: where vmlinux goes
  EXPECT_EQ(entry(layout::kPdAddr + 3 * 4096, 511), 0xffe00083u);  // last 2 MiB below 4 GiB
}

TEST(BootRegistersTest, Linux64_LongModeFlatSegmentsRsiZeroPage) {
  kvm_regs regs{};
  regs.rax = 42;
  kvm_sregs sregs{};
  sregs.apic_base = 0xfee00900;
  SetLinux64Registers(0x1000000, layout::kZeroPageAddr, &regs, &sregs);
  EXPECT_EQ(regs.rip, 0x1000000u);
  EXPECT_EQ(regs.rsi, layout::kZeroPageAddr);
  EXPECT_EQ(regs.rflags, 0x2u);
  EXPECT_EQ(regs.rax, 0u);
  EXPECT_EQ(sregs.cr0, 0x80000031u);  // PG | NE | ET | PE
  EXPECT_EQ(sregs.cr3, layout::kPml4Addr);
  EXPECT_EQ(sregs.cr4, 0x20u);    // PAE
  EXPECT_EQ(sregs.efer, 0x500u);  // LMA | LME
  EXPECT_EQ(sregs.cs.selector, kBootCs);
  EXPECT_EQ(sregs.cs.l, 1);
  EXPECT_EQ(sregs.cs.db, 0);
  EXPECT_EQ(sregs.ds.selector, kBootDs);
  EXPECT_EQ(sregs.ss.type, 0x3);
  EXPECT_EQ(sregs.ss.db, 1);
  EXPECT_EQ(sregs.tr.selector, kBootTss);
  EXPECT_EQ(sregs.tr.type, 0xb);
  EXPECT_EQ(sregs.tr.limit, 0x67u);
  EXPECT_EQ(sregs.gdt.base, layout::kGdtAddr);
  EXPECT_EQ(sregs.gdt.limit, 47);
  EXPECT_EQ(sregs.apic_base, 0xfee00900u);  // kept
}

TEST(BootRegistersTest, Pvh_ProtectedModePagingOffEbxStartInfo) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  sregs.efer = 0x500;
  SetPvhRegisters(0x10004a0, layout::kPvhStartInfoAddr, &regs, &sregs);
  EXPECT_EQ(regs.rip, 0x10004a0u);
  EXPECT_EQ(regs.rbx, layout::kPvhStartInfoAddr);
  EXPECT_EQ(regs.rflags, 0x2u);
  EXPECT_EQ(sregs.cr0, 0x11u);  // PE (and the hard-wired ET)
  EXPECT_EQ(sregs.cr4, 0u);
  EXPECT_EQ(sregs.efer, 0u);
  EXPECT_EQ(sregs.cs.selector, kBootCs32);
  EXPECT_EQ(sregs.cs.db, 1);
  EXPECT_EQ(sregs.cs.l, 0);
  EXPECT_EQ(sregs.cs.limit, 0xffffffffu);
  EXPECT_EQ(sregs.es.base, 0u);
  EXPECT_EQ(sregs.es.limit, 0xffffffffu);
  EXPECT_EQ(sregs.tr.base, 0u);
  EXPECT_EQ(sregs.tr.limit, 0x67u);
}

TEST(SetupBootCpuTest, Linux64_WritesGdtAndPageTables) {
  GuestMemory memory = testing::MakeMemory();
  BootPlan plan{.mode = EntryMode::kLinux64,
                .entry = GuestAddr(0x200000),
                .boot_info = GuestAddr(layout::kZeroPageAddr)};
  kvm_regs regs{};
  kvm_sregs sregs{};
  ASSERT_TRUE(SetupBootCpu(memory, plan, &regs, &sregs).has_value());
  EXPECT_EQ(memory.ReadObj<uint64_t>(GuestAddr(layout::kGdtAddr + kBootCs)).value(),
            BuildGdt()[kBootCs / 8]);
  EXPECT_EQ(memory.ReadObj<uint64_t>(GuestAddr(layout::kPml4Addr)).value(),
            layout::kPdptAddr | 0x3);
  EXPECT_EQ(regs.rip, 0x200000u);
}

TEST(SetupBootCpuTest, Pvh_NoPageTables) {
  GuestMemory memory = testing::MakeMemory();
  BootPlan plan{.mode = EntryMode::kPvh,
                .entry = GuestAddr(0x200000),
                .boot_info = GuestAddr(layout::kPvhStartInfoAddr)};
  kvm_regs regs{};
  kvm_sregs sregs{};
  ASSERT_TRUE(SetupBootCpu(memory, plan, &regs, &sregs).has_value());
  EXPECT_EQ(memory.ReadObj<uint64_t>(GuestAddr(layout::kPml4Addr)).value(), 0u);
  EXPECT_EQ(regs.rbx, layout::kPvhStartInfoAddr);
}

}  // namespace
}  // namespace kite::boot
