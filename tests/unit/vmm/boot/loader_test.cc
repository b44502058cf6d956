// LoadKernel with the shared guest kernel (vmlinux with its PVH note, bzImage) and the file
// checks: K1 (not a kernel) and K7 (not a regular file).
#include "vmm/boot/loader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "test_images.h"
#include "testing/temp_dir.h"
#include "vmm/boot/pvh.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

std::string GuestFile(const std::string& name) {
  return std::string(KITE_GUEST_DIR) + "/" + name;
}

#define REQUIRE_GUEST_FILE(name)                                                            \
  do {                                                                                      \
    if (!std::filesystem::exists(GuestFile(name))) {                                        \
      GTEST_SKIP() << "skipped: " << GuestFile(name) << " is absent (shared guest kernel)"; \
    }                                                                                       \
  } while (0)

class KernelLoaderTest : public ::testing::Test {
 protected:
  void ExpectRefused(const KernelSpec& spec, const std::string& what) {
    Result<BootPlan> plan = LoadKernel(memory_, spec);
    ASSERT_FALSE(plan.has_value());
    EXPECT_NE(plan.error().message().find(what), std::string::npos) << plan.error().message();
    EXPECT_TRUE(testing::AllZero(memory_));
  }

  kite::testing::TempDir dir_;
  GuestMemory memory_ = testing::MakeMemory();
};

TEST_F(KernelLoaderTest, SharedVmlinux_Linux64EntryAtStartup64) {
  REQUIRE_GUEST_FILE("vmlinux");
  GuestMemory memory = testing::MakeMemory(256 << 20);
  Result<BootPlan> plan = LoadKernel(
      memory,
      {.kernel_path = GuestFile("vmlinux"), .cmdline = "console=ttyS0", .prefer_pvh = false});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, GuestAddr(0x1000000));  // e_entry: phys_startup_64 at 16 MiB
  EXPECT_EQ(plan->kernel_kind, "ELF vmlinux");
  EXPECT_EQ(plan->kernel_end, 0x1af8000u + 0x11e000u);  // last PT_LOAD: p_paddr + p_memsz
  // The first PT_LOAD (file offset 0x200000) is at its p_paddr, 16 MiB.
  std::string file = kite::testing::ReadFile(GuestFile("vmlinux"));
  std::string loaded(4096, '\0');
  ASSERT_TRUE(memory.Read(GuestAddr(0x1000000), loaded.data(), loaded.size()).has_value());
  EXPECT_EQ(loaded, file.substr(0x200000, 4096));
  BootParams bp = memory.ReadObj<BootParams>(plan->boot_info).value();
  EXPECT_EQ(bp.hdr.boot_flag, kBootFlag);
  EXPECT_EQ(bp.hdr.header, kHdrSMagic);
  EXPECT_EQ(bp.hdr.cmd_line_ptr, layout::kCmdlineAddr);
  EXPECT_EQ(bp.hdr.cmdline_size, kLinuxCmdlineSize);
  ASSERT_EQ(bp.e820_entries, 3);
  EXPECT_EQ(bp.e820_table[2].addr, layout::kHighMemStart);
  EXPECT_EQ(bp.e820_table[2].size, (256u << 20) - layout::kHighMemStart);
}

TEST_F(KernelLoaderTest, SharedVmlinux_PvhNoteFound) {
  REQUIRE_GUEST_FILE("vmlinux");
  GuestMemory memory = testing::MakeMemory(256 << 20);
  kite::testing::WriteFile(dir_.File("initrd"), std::string(8192, 'i'));
  Result<BootPlan> plan = LoadKernel(memory, {.kernel_path = GuestFile("vmlinux"),
                                              .initrd_path = dir_.File("initrd"),
                                              .cmdline = "quiet",
                                              .acpi_rsdp = layout::kRsdpAddr});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kPvh);
  EXPECT_EQ(plan->entry, GuestAddr(0x10004a0));  // pvh_start_xen (readelf -n)
  EXPECT_EQ(plan->boot_info, GuestAddr(layout::kPvhStartInfoAddr));
  HvmStartInfo info = memory.ReadObj<HvmStartInfo>(plan->boot_info).value();
  EXPECT_EQ(info.magic, kHvmStartMagic);
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(info.cmdline_paddr, layout::kCmdlineAddr);
  EXPECT_EQ(info.rsdp_paddr, layout::kRsdpAddr);
  EXPECT_EQ(info.memmap_entries, 3u);
  ASSERT_EQ(info.nr_modules, 1u);
  HvmModlistEntry module = memory.ReadObj<HvmModlistEntry>(GuestAddr(info.modlist_paddr)).value();
  EXPECT_EQ(module.paddr, plan->initrd_addr.value);
  EXPECT_EQ(module.size, 8192u);
  HvmMemmapEntry ram = memory.ReadObj<HvmMemmapEntry>(GuestAddr(info.memmap_paddr + 48)).value();
  EXPECT_EQ(ram.addr, layout::kHighMemStart);
  EXPECT_EQ(ram.type, kE820Ram);
}

TEST_F(KernelLoaderTest, SharedVmlinux_RamTooSmall_Refused) {
  REQUIRE_GUEST_FILE("vmlinux");
  ExpectRefused({.kernel_path = GuestFile("vmlinux")}, "is not inside guest RAM");
}

TEST_F(KernelLoaderTest, SharedBzImage_Loads) {
  REQUIRE_GUEST_FILE("bzImage");
  GuestMemory memory = testing::MakeMemory(256 << 20);
  Result<BootPlan> plan =
      LoadKernel(memory, {.kernel_path = GuestFile("bzImage"), .cmdline = "console=ttyS0"});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, GuestAddr(0x100200));
  EXPECT_EQ(plan->kernel_kind, "bzImage");
  BootParams bp = memory.ReadObj<BootParams>(plan->boot_info).value();
  EXPECT_GE(bp.hdr.version, 0x020c);
  EXPECT_EQ(bp.hdr.type_of_loader, 0xff);
  EXPECT_EQ(bp.hdr.code32_start, 0x100000u);
  EXPECT_TRUE(bp.hdr.xloadflags & kXlfKernel64);
  EXPECT_EQ(bp.hdr.cmd_line_ptr, layout::kCmdlineAddr);
  char cmdline[14] = {};
  ASSERT_TRUE(memory.Read(GuestAddr(bp.hdr.cmd_line_ptr), cmdline, 14).has_value());
  EXPECT_STREQ(cmdline, "console=ttyS0");
}

TEST_F(KernelLoaderTest, AllZeroHelper_SeesOneWrittenByte) {
  ASSERT_TRUE(testing::AllZero(memory_));
  ASSERT_TRUE(memory_.WriteObj<uint8_t>(GuestAddr(0xabcdef), 1).has_value());
  EXPECT_FALSE(testing::AllZero(memory_));
}

TEST_F(KernelLoaderTest, K1_EmptyFile_Refused) {
  kite::testing::WriteFile(dir_.File("empty"), "");
  ExpectRefused({.kernel_path = dir_.File("empty")}, "invalid kernel image: not an ELF or bzImage");
}

TEST_F(KernelLoaderTest, K1_RandomBytes_Refused) {
  std::string bytes(4096, '\0');
  uint32_t x = 12345;
  for (char& c : bytes) c = static_cast<char>((x = x * 1103515245 + 12345) >> 16);
  kite::testing::WriteFile(dir_.File("random"), bytes);
  ExpectRefused({.kernel_path = dir_.File("random")},
                "invalid kernel image: not an ELF or bzImage");
}

TEST_F(KernelLoaderTest, K7_KernelIsDevZero_Refused) {
  ExpectRefused({.kernel_path = "/dev/zero"},
                "kernel /dev/zero: not a regular file (it is a "
                "character device)");
}

TEST_F(KernelLoaderTest, K7_KernelIsDirectory_Refused) {
  ExpectRefused({.kernel_path = dir_.path().string()}, "not a regular file (it is a directory)");
}

TEST_F(KernelLoaderTest, K7_KernelIsFifoWithoutWriter_RefusedWithoutBlocking) {
  std::string fifo = dir_.File("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectRefused({.kernel_path = fifo}, "not a regular file (it is a FIFO)");
}

TEST_F(KernelLoaderTest, K7_InitrdIsDevZero_Refused) {
  kite::testing::WriteFile(dir_.File("bzImage"), testing::MakeBzImage());
  ExpectRefused({.kernel_path = dir_.File("bzImage"), .initrd_path = "/dev/zero"},
                "initrd /dev/zero: not a regular file");
}

TEST_F(KernelLoaderTest, MissingKernel_RefusedWithPath) {
  ExpectRefused({.kernel_path = dir_.File("nope")}, "opening kernel " + dir_.File("nope"));
}

}  // namespace
}  // namespace kite::boot
