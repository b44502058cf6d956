// The e820 map, the command-line checks and the zero page built for an ELF vmlinux.
#include "vmm/boot/boot_params.h"

#include <gtest/gtest.h>

#include <vector>

#include "test_images.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

using testing::Unpacked;

std::vector<MemoryRegion> Regions(uint64_t low, uint64_t high = 0) {
  std::vector<MemoryRegion> regions = {{GuestAddr(0), low, nullptr}};
  if (high) regions.push_back({GuestAddr(layout::kHighRamStart), high, nullptr});
  return regions;
}

void ExpectEntry(const E820Entry& e, uint64_t addr, uint64_t size, uint32_t type) {
  EXPECT_EQ(Unpacked(e.addr), addr);
  EXPECT_EQ(Unpacked(e.size), size);
  EXPECT_EQ(Unpacked(e.type), type);
}

TEST(E820Test, Build_SmallGuest_LowRamReservedBiosAreaHighRam) {
  std::vector<E820Entry> map = BuildE820(Regions(64 << 20)).value();
  ASSERT_EQ(map.size(), 3u);
  ExpectEntry(map[0], 0, 0x9fc00, kE820Ram);
  ExpectEntry(map[1], 0x9fc00, 0x100000 - 0x9fc00, kE820Reserved);
  ExpectEntry(map[2], 0x100000, (64 << 20) - 0x100000, kE820Ram);
}

TEST(E820Test, Build_RamAbove4G_ReportedAfterTheHole) {
  std::vector<E820Entry> map = BuildE820(Regions(layout::kMmioHoleStart, 1ull << 30)).value();
  ASSERT_EQ(map.size(), 4u);
  ExpectEntry(map[2], 0x100000, layout::kMmioHoleStart - 0x100000, kE820Ram);
  ExpectEntry(map[3], layout::kHighRamStart, 1ull << 30, kE820Ram);
}

TEST(E820Test, Build_RegionAcrossHole_Split) {
  std::vector<MemoryRegion> regions = {{GuestAddr(0), layout::kMmioHoleEnd + 0x1000, nullptr}};
  std::vector<E820Entry> map = BuildE820(regions).value();
  ASSERT_EQ(map.size(), 4u);
  ExpectEntry(map[2], 0x100000, layout::kMmioHoleStart - 0x100000, kE820Ram);
  ExpectEntry(map[3], layout::kMmioHoleEnd, 0x1000, kE820Ram);
}

// The VMGenID page (layout::kVmGenIdAddr) is reserved whatever the RAM layout: the guest
// never allocates it, so the id the VMM writes there stays where ACPI says it is.
TEST(E820Test, Build_VmGenIdPage_Reserved) {
  for (const auto& regions : {Regions(64 << 20), Regions(layout::kMmioHoleStart, 1ull << 30)}) {
    std::vector<E820Entry> map = BuildE820(regions).value();
    const uint64_t begin = layout::kVmGenIdAddr;
    const uint64_t end = begin + 0x1000;
    bool covered = false;
    for (const E820Entry& e : map) {
      if (e.addr + e.size <= begin || e.addr >= end) continue;  // no overlap
      EXPECT_EQ(Unpacked(e.type), kE820Reserved) << "entry at 0x" << std::hex << e.addr;
      covered = covered || (e.addr <= begin && e.addr + e.size >= end);
    }
    EXPECT_TRUE(covered) << "one reserved entry covers the whole page";
  }
}

TEST(BootCmdlineTest, Check_Empty_Accepted) {
  EXPECT_TRUE(CheckCmdline("", 10).has_value());
}

TEST(BootCmdlineTest, K9_Check_BeyondLayoutLimit_Refused) {
  std::string huge(layout::kCmdlineMax, 'x');
  Result<void> r = CheckCmdline(huge, UINT32_MAX);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("at most 65535"), std::string::npos) << r.error().message();
}

TEST(BootCmdlineTest, Write_NulTerminatedAtCmdlineAddr) {
  GuestMemory memory = testing::MakeMemory();
  ASSERT_TRUE(memory.WriteObj<uint8_t>(GuestAddr(layout::kCmdlineAddr + 3), 'z').has_value());
  GuestAddr addr = WriteCmdline(memory, "abc").value();
  EXPECT_EQ(addr, GuestAddr(layout::kCmdlineAddr));
  char got[4];
  ASSERT_TRUE(memory.Read(addr, got, 4).has_value());
  EXPECT_EQ(std::string(got, 4), std::string("abc\0", 4));
}

TEST(ZeroPageTest, Build_ForVmlinux_MinimalHeaderAndInitrdSplitAcross32Bits) {
  std::vector<E820Entry> map = BuildE820(Regions(64 << 20)).value();
  BootParams bp = BuildZeroPage({.cmdline = GuestAddr(layout::kCmdlineAddr),
                                 .initrd = GuestAddr(0x1'2345'6000),
                                 .initrd_size = 0x1000,
                                 .e820 = map});
  EXPECT_EQ(Unpacked(bp.hdr.boot_flag), kBootFlag);
  EXPECT_EQ(Unpacked(bp.hdr.header), kHdrSMagic);
  EXPECT_EQ(Unpacked(bp.hdr.type_of_loader), 0xff);
  EXPECT_EQ(Unpacked(bp.hdr.cmdline_size), kLinuxCmdlineSize);
  EXPECT_EQ(Unpacked(bp.hdr.ramdisk_image), 0x23456000u);
  EXPECT_EQ(Unpacked(bp.ext_ramdisk_image), 1u);
  EXPECT_EQ(Unpacked(bp.hdr.ramdisk_size), 0x1000u);
  EXPECT_EQ(Unpacked(bp.acpi_rsdp_addr), 0u);
  ASSERT_EQ(Unpacked(bp.e820_entries), 3);
  ExpectEntry(bp.e820_table[1], 0x9fc00, 0x100000 - 0x9fc00, kE820Reserved);
}

TEST(ZeroPageTest, Build_ForBzImage_KeepsTheKernelsHeader) {
  std::string image = testing::MakeBzImage();
  SetupHeader hdr = *testing::BzHeader(image);
  BootParams bp = BuildZeroPage({.kernel_hdr = &hdr, .cmdline = GuestAddr(layout::kCmdlineAddr)});
  EXPECT_EQ(Unpacked(bp.hdr.version), 0x020f);
  EXPECT_EQ(Unpacked(bp.hdr.cmdline_size), 255u);
  EXPECT_EQ(Unpacked(bp.hdr.init_size), 0x100000u);
  EXPECT_EQ(Unpacked(bp.hdr.type_of_loader), 0xff);
  EXPECT_EQ(Unpacked(bp.hdr.cmd_line_ptr), layout::kCmdlineAddr);
}

}  // namespace
}  // namespace kite::boot
