// ELF vmlinux loading: a valid synthetic ELF, the PVH note, and the K4-K6 malformed cases.
#include <gtest/gtest.h>

#include "test_images.h"
#include "testing/temp_dir.h"
#include "vmm/boot/loader.h"

namespace kite::boot {
namespace {

using testing::ElfHeader;
using testing::ElfOptions;
using testing::MakeElf;
using testing::ProgramHeader;

class ElfTest : public ::testing::Test {
 protected:
  Result<BootPlan> Load(const std::string& image, bool prefer_pvh = true) {
    std::string path = dir_.File("vmlinux");
    kite::testing::WriteFile(path, image);
    return LoadKernel(memory_,
                      {.kernel_path = path, .cmdline = "console=ttyS0", .prefer_pvh = prefer_pvh});
  }
  // Loads, expects a refusal whose message contains `what`, and an untouched guest.
  void ExpectRefused(const std::string& image, const std::string& what) {
    Result<BootPlan> plan = Load(image);
    ASSERT_FALSE(plan.has_value());
    EXPECT_NE(plan.error().message().find(what), std::string::npos) << plan.error().message();
    EXPECT_TRUE(testing::AllZero(memory_));
  }

  kite::testing::TempDir dir_;
  GuestMemory memory_ = testing::MakeMemory();
};

TEST_F(ElfTest, Load_ValidElf_SegmentsAtPhysicalAddressesWithBssZeroed) {
  ElfOptions options;
  options.segments = {{0x200000, "abcd", 0x1000}, {0x300000, "efgh", 0}};
  // Dirty memory where the bss goes: a restart reuses guest memory.
  ASSERT_TRUE(memory_.WriteObj<uint32_t>(GuestAddr(0x200100), 0xdeadbeef).has_value());
  Result<BootPlan> plan = Load(MakeElf(options));
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, GuestAddr(0x200000));
  EXPECT_EQ(plan->kernel_kind, "ELF vmlinux");
  EXPECT_EQ(plan->kernel_end, 0x300004u);
  char got[5] = {};
  ASSERT_TRUE(memory_.Read(GuestAddr(0x300000), got, 4).has_value());
  EXPECT_STREQ(got, "efgh");
  EXPECT_EQ(memory_.ReadObj<uint32_t>(GuestAddr(0x200100)).value(), 0u);
}

TEST_F(ElfTest, Load_VirtualEntry_TranslatedThroughItsSegment) {
  ElfOptions options;
  options.entry = 0xffffffff80200040ull;  // MakeElf's p_vaddr = p_paddr + 0xffffffff80000000
  Result<BootPlan> plan = Load(MakeElf(options));
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->entry, GuestAddr(0x200040));
}

TEST_F(ElfTest, Load_EntryOutsideSegments_Refused) {
  ElfOptions options;
  options.entry = 0x900000;
  ExpectRefused(MakeElf(options), "e_entry 0x900000 is not inside any PT_LOAD segment");
}

TEST_F(ElfTest, Load_PvhNote_EntersPvh) {
  ElfOptions options;
  options.pvh_note = true;
  Result<BootPlan> plan = Load(MakeElf(options));
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kPvh);
  EXPECT_EQ(plan->entry, GuestAddr(0x200010));
  EXPECT_EQ(plan->kernel_kind, "ELF vmlinux (PVH)");
}

TEST_F(ElfTest, Load_PvhNoteWith4ByteDesc_EntersPvh) {
  ElfOptions options;
  options.pvh_note = true;
  options.pvh_desc_size = 4;
  Result<BootPlan> plan = Load(MakeElf(options));
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->entry, GuestAddr(0x200010));
}

TEST_F(ElfTest, Load_PvhNoteNotPreferred_EntersLinux64) {
  ElfOptions options;
  options.pvh_note = true;
  Result<BootPlan> plan = Load(MakeElf(options), /*prefer_pvh=*/false);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, GuestAddr(0x200000));
}

TEST_F(ElfTest, K4_ElfBigEndian_Refused) {
  std::string image = MakeElf();
  ElfHeader(image)->e_ident[EI_DATA] = ELFDATA2MSB;
  ExpectRefused(image, "big-endian ELF");
}

TEST_F(ElfTest, K4_Elf32Bit_Refused) {
  std::string image = MakeElf();
  ElfHeader(image)->e_ident[EI_CLASS] = ELFCLASS32;
  ExpectRefused(image, "not a 64-bit ELF");
}

TEST_F(ElfTest, K4_ElfWrongMachine_Refused) {
  std::string image = MakeElf();
  ElfHeader(image)->e_machine = EM_AARCH64;
  ExpectRefused(image, "e_machine is 183, not x86_64");
}

TEST_F(ElfTest, K4_ElfBadPhentsize_Refused) {
  std::string image = MakeElf();
  ElfHeader(image)->e_phentsize = 32;
  ExpectRefused(image, "e_phentsize is 32, expected 56");
}

TEST_F(ElfTest, K4_ElfPhoffInsideHeader_Refused) {
  std::string image = MakeElf();
  ElfHeader(image)->e_phoff = 16;
  ExpectRefused(image, "program headers at e_phoff 0x10 are not inside the file");
}

TEST_F(ElfTest, K4_ElfPhoffPastEnd_Refused) {
  std::string image = MakeElf();
  ElfHeader(image)->e_phoff = ~uint64_t{0} - 8;
  ExpectRefused(image, "are not inside the file after the ELF header");
}

TEST_F(ElfTest, K4_ElfPhnum65535_Refused) {
  std::string image = MakeElf();
  ElfHeader(image)->e_phnum = 65535;
  ExpectRefused(image, "e_phnum is 65535");
}

TEST_F(ElfTest, K4_ElfTruncatedHeader_Refused) {
  ExpectRefused(MakeElf().substr(0, 40), "truncated ELF header");
}

TEST_F(ElfTest, K5_SegmentBeyondRam_Refused) {
  std::string image = MakeElf();
  ProgramHeader(image, 0)->p_paddr = 0xfff000;  // 16 MiB guest: runs 4 KiB past the end
  ExpectRefused(image, "is not inside guest RAM");
}

TEST_F(ElfTest, K5_SegmentAddressOverflows_Refused) {
  std::string image = MakeElf();
  ProgramHeader(image, 0)->p_paddr = ~uint64_t{0} - 0x10;
  ExpectRefused(image, "+ p_memsz overflows");
}

TEST_F(ElfTest, K5_SegmentAbove4GiB_Refused) {
  std::string image = MakeElf();
  ProgramHeader(image, 0)->p_paddr = 0x1'0000'0000;
  ExpectRefused(image, "reaches above 4 GiB");
}

TEST_F(ElfTest, K5_FileszLargerThanMemsz_Refused) {
  std::string image = MakeElf();
  ProgramHeader(image, 0)->p_filesz = 0x3000;
  ExpectRefused(image, "p_filesz 0x3000 is larger than p_memsz 0x2000");
}

TEST_F(ElfTest, K5_SegmentDataPastEndOfFile_Refused) {
  std::string image = MakeElf();
  ProgramHeader(image, 0)->p_offset = ~uint64_t{0} - 0x10;
  ExpectRefused(image, "is past the end of the file");
}

TEST_F(ElfTest, K5_SegmentOverBootStructures_Refused) {
  std::string image = MakeElf();
  ProgramHeader(image, 0)->p_paddr = 0x7000;  // the zero page
  ExpectRefused(image, "is below 1 MiB");
}

TEST_F(ElfTest, K5_NoLoadSegment_Refused) {
  std::string image = MakeElf();
  ProgramHeader(image, 0)->p_type = PT_NULL;
  ExpectRefused(image, "no PT_LOAD segment");
}

TEST_F(ElfTest, K6_PvhNoteHugeNamesz_Refused) {
  ElfOptions options;
  options.pvh_note = true;
  std::string image = MakeElf(options);
  reinterpret_cast<Elf64_Nhdr*>(image.data() + testing::kNoteOffset)->n_namesz = 0xfffffffe;
  ExpectRefused(image, "run past the end of the segment");
}

TEST_F(ElfTest, K6_PvhNoteHugeDescsz_Refused) {
  ElfOptions options;
  options.pvh_note = true;
  std::string image = MakeElf(options);
  reinterpret_cast<Elf64_Nhdr*>(image.data() + testing::kNoteOffset)->n_descsz = 0xffffffff;
  ExpectRefused(image, "run past the end of the segment");
}

TEST_F(ElfTest, K6_NoteSegmentHuge_Refused) {
  ElfOptions options;
  options.pvh_note = true;
  std::string image = MakeElf(options);
  ProgramHeader(image, 0)->p_filesz = 1ull << 40;
  ExpectRefused(image, "too large or past the end of the file");
}

TEST_F(ElfTest, K6_PvhNoteOddDescSize_Refused) {
  ElfOptions options;
  options.pvh_note = true;
  options.pvh_desc_size = 2;
  ExpectRefused(MakeElf(options), "XEN_ELFNOTE_PHYS32_ENTRY has 2 bytes, expected 4 or 8");
}

TEST_F(ElfTest, K6_PvhEntryOutsideKernel_Refused) {
  ElfOptions options;
  options.pvh_note = true;
  options.pvh_entry = 0x1'0020'0000;
  ExpectRefused(MakeElf(options), "PVH entry 0x100200000 is not a 32-bit address");
}

}  // namespace
}  // namespace kite::boot
