// bzImage loading: a valid synthetic bzImage, the boot_params it gets, and K1-K3, K8, K9.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_images.h"
#include "testing/temp_dir.h"
#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

using testing::Unpacked;

using testing::BzHeader;
using testing::MakeBzImage;

class BzImageTest : public ::testing::Test {
 protected:
  Result<BootPlan> Load(const std::string& image, KernelSpec spec = {}) {
    spec.kernel_path = dir_.File("bzImage");
    kite::testing::WriteFile(spec.kernel_path, image);
    return LoadKernel(memory_, spec);
  }
  void ExpectRefused(const std::string& image, const std::string& what, KernelSpec spec = {}) {
    Result<BootPlan> plan = Load(image, std::move(spec));
    ASSERT_FALSE(plan.has_value());
    EXPECT_NE(plan.error().message().find(what), std::string::npos) << plan.error().message();
    EXPECT_TRUE(testing::AllZero(memory_));
  }
  BootParams ZeroPage() {
    return memory_.ReadObj<BootParams>(GuestAddr(layout::kZeroPageAddr)).value();
  }

  kite::testing::TempDir dir_;
  GuestMemory memory_ = testing::MakeMemory();
};

TEST_F(BzImageTest, Load_Valid_ProtectedModePartAtCode32StartEntryAt0x200) {
  std::string image = MakeBzImage();
  Result<BootPlan> plan = Load(image);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, GuestAddr(0x100200));
  EXPECT_EQ(plan->boot_info, GuestAddr(layout::kZeroPageAddr));
  EXPECT_EQ(plan->kernel_kind, "bzImage");
  EXPECT_EQ(plan->kernel_end, 0x300000u);  // pref_address 2 MiB + init_size 1 MiB
  std::string loaded(testing::kTestPayloadSize, '\0');
  ASSERT_TRUE(memory_.Read(GuestAddr(0x100000), loaded.data(), loaded.size()).has_value());
  EXPECT_EQ(loaded, image.substr((testing::kTestSetupSects + 1) * 512));
}

TEST_F(BzImageTest, Load_Valid_BootParamsFromTheFilesSetupHeader) {
  Result<BootPlan> plan = Load(MakeBzImage(), {.cmdline = "console=ttyS0", .acpi_rsdp = 0xe0000});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  BootParams bp = ZeroPage();
  EXPECT_EQ(Unpacked(bp.hdr.header), kHdrSMagic);
  EXPECT_EQ(Unpacked(bp.hdr.version), 0x020f);
  EXPECT_EQ(Unpacked(bp.hdr.setup_sects), testing::kTestSetupSects);
  EXPECT_EQ(Unpacked(bp.hdr.type_of_loader), 0xff);
  EXPECT_EQ(Unpacked(bp.hdr.cmd_line_ptr), layout::kCmdlineAddr);
  EXPECT_EQ(Unpacked(bp.hdr.ramdisk_image), 0u);
  EXPECT_EQ(Unpacked(bp.acpi_rsdp_addr), 0xe0000u);
  EXPECT_EQ(Unpacked(bp.e820_entries), 3);
  EXPECT_EQ(Unpacked(bp.hdr.setup_data), 0u);
  char cmdline[14] = {};
  ASSERT_TRUE(memory_.Read(GuestAddr(layout::kCmdlineAddr), cmdline, 14).has_value());
  EXPECT_STREQ(cmdline, "console=ttyS0");
}

TEST_F(BzImageTest, Load_Initrd_PlacedAtTopOfRamPageAligned) {
  std::string initrd(10000, 'i');
  kite::testing::WriteFile(dir_.File("initrd"), initrd);
  Result<BootPlan> plan = Load(MakeBzImage(), {.initrd_path = dir_.File("initrd")});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  uint64_t expected = ((16 << 20) - initrd.size()) & ~uint64_t{0xfff};
  EXPECT_EQ(plan->initrd_addr, GuestAddr(expected));
  EXPECT_EQ(plan->initrd_size, initrd.size());
  BootParams bp = ZeroPage();
  EXPECT_EQ(Unpacked(bp.hdr.ramdisk_image), expected);
  EXPECT_EQ(Unpacked(bp.hdr.ramdisk_size), initrd.size());
  std::string got(initrd.size(), '\0');
  ASSERT_TRUE(memory_.Read(GuestAddr(expected), got.data(), got.size()).has_value());
  EXPECT_EQ(got, initrd);
}

TEST_F(BzImageTest, Load_InitrdAddrMax_Respected) {
  std::string image = MakeBzImage();
  BzHeader(image)->initrd_addr_max = 0x7fffff;  // 8 MiB - 1
  kite::testing::WriteFile(dir_.File("initrd"), std::string(5000, 'i'));
  Result<BootPlan> plan = Load(image, {.initrd_path = dir_.File("initrd")});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->initrd_addr, GuestAddr(0x800000 - 0x2000));
}

TEST_F(BzImageTest, Load_SetupDataFromFile_NotPassedOn) {
  std::string image = MakeBzImage();
  BzHeader(image)->setup_data = 0x12345678;
  ASSERT_TRUE(Load(image).has_value());
  EXPECT_EQ(Unpacked(ZeroPage().hdr.setup_data), 0u);
}

TEST_F(BzImageTest, K1_ZImageWithoutHdrS_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->header = 0;
  ExpectRefused(image, "invalid kernel image: not an ELF or bzImage");
}

TEST_F(BzImageTest, K2_SetupSectsLargerThanFile_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->setup_sects = 200;
  ExpectRefused(image, "setup_sects 200 (setup code 102912 bytes) leaves no kernel");
}

TEST_F(BzImageTest, K2_SetupSectsZeroMeansFour) {
  std::string image = MakeBzImage();
  BzHeader(image)->setup_sects = 0;
  ASSERT_TRUE(Load(image).has_value());
  std::string loaded(16, '\0');
  ASSERT_TRUE(memory_.Read(GuestAddr(0x100000), loaded.data(), loaded.size()).has_value());
  EXPECT_EQ(loaded, image.substr(5 * 512, 16));
}

TEST_F(BzImageTest, K3_ProtocolBelow200_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->version = 0x0105;
  ExpectRefused(image, "boot protocol 1.05 is too old");
}

TEST_F(BzImageTest, K3_ProtocolWithout64BitEntry_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->version = 0x020b;
  ExpectRefused(image, "boot protocol 2.11 is too old");
}

TEST_F(BzImageTest, K3_NoLoadedHigh_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->loadflags = 0;
  ExpectRefused(image, "lack LOADED_HIGH");
}

TEST_F(BzImageTest, K3_NoXlfKernel64_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->xloadflags = 0;
  ExpectRefused(image, "lack XLF_KERNEL_64");
}

TEST_F(BzImageTest, K3_Code32StartBelowHighMem_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->code32_start = 0x10000;
  ExpectRefused(image, "code32_start 0x10000 is below 1 MiB");
}

TEST_F(BzImageTest, K3_SetupHeaderTooShortFor212_Refused) {
  std::string image = MakeBzImage();
  image[0x201] = 0x20;  // the header would end at 0x222, before cmdline_size
  ExpectRefused(image, "setup header ends at 0x222, too short");
}

TEST_F(BzImageTest, K3_BadBootFlag_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->boot_flag = 0x1234;
  ExpectRefused(image, "boot_flag is 0x1234");
}

TEST_F(BzImageTest, InitSizeBeyondRam_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->init_size = 0x10000000;
  ExpectRefused(image, "the kernel needs guest RAM [0x100000, 0x10200000)");
}

TEST_F(BzImageTest, HugePrefAddress_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->pref_address = ~uint64_t{0} - 0x1000;
  ExpectRefused(image, "pref_address 0xffffffffffffefff is beyond");
}

TEST_F(BzImageTest, K8_InitrdLargerThanRam_Refused) {
  kite::testing::WriteFile(dir_.File("initrd"), "");
  std::filesystem::resize_file(dir_.File("initrd"), 17 << 20);  // sparse: fast to make
  ExpectRefused(MakeBzImage(), "does not fit in guest RAM", {.initrd_path = dir_.File("initrd")});
}

TEST_F(BzImageTest, K8_InitrdOnlyFitsOverKernel_Refused) {
  std::string image = MakeBzImage();
  BzHeader(image)->init_size = 0xc00000;  // the kernel needs [1 MiB, 14 MiB)
  kite::testing::WriteFile(dir_.File("initrd"), std::string(3 << 20, 'i'));
  ExpectRefused(image, "between the kernel end 0xe00000", {.initrd_path = dir_.File("initrd")});
}

TEST_F(BzImageTest, K8_InitrdEmpty_Refused) {
  kite::testing::WriteFile(dir_.File("initrd"), "");
  ExpectRefused(MakeBzImage(), "initrd is empty", {.initrd_path = dir_.File("initrd")});
}

TEST_F(BzImageTest, K9_CmdlineAtCmdlineSize_Accepted) {
  Result<BootPlan> plan = Load(MakeBzImage(), {.cmdline = std::string(255, 'c')});
  EXPECT_TRUE(plan.has_value()) << plan.error().message();
}

TEST_F(BzImageTest, K9_CmdlineLongerThanCmdlineSize_Refused) {
  ExpectRefused(MakeBzImage(), "command line is 256 bytes; the kernel accepts at most 255",
                {.cmdline = std::string(256, 'c')});
}

TEST_F(BzImageTest, K9_CmdlineWithNul_Refused) {
  ExpectRefused(MakeBzImage(), "contains a NUL byte at offset 4",
                {.cmdline = std::string("quiet\0root=/dev/vda", 19).substr(1)});
}

}  // namespace
}  // namespace kite::boot
