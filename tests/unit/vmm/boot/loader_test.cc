// LoadKernel with kite's own guest kernel (vmlinux with its PVH note, bzImage; found as
// testing/guest_kernel.h says, skipped without it and failed under CI=true) and the file
// checks: K1 (not a kernel) and K7 (not a regular file).
#include "vmm/boot/loader.h"

#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "test_images.h"
#include "testing/guest_kernel.h"
#include "testing/temp_dir.h"
#include "vmm/boot/pvh.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

using testing::Unpacked;

// What the guest vmlinux's own headers say the loader must do, read here with <elf.h> (the
// numbers depend on the kernel build, so they are not written into the test).
struct VmlinuxFacts {
  uint64_t entry = 0;                 // e_entry
  uint64_t first_offset = 0;          // the first PT_LOAD's p_offset ...
  uint64_t first_paddr = 0;           // ... and p_paddr
  uint64_t end = 0;                   // the last PT_LOAD's p_paddr + p_memsz
  std::optional<uint64_t> pvh_entry;  // the Xen note XEN_ELFNOTE_PHYS32_ENTRY (18)
};

// The Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) in the PT_NOTE segment `ph`, if there.
std::optional<uint64_t> PvhEntryNote(const std::string& file, const Elf64_Phdr& ph) {
  const uint64_t end = std::min<uint64_t>(ph.p_offset + ph.p_filesz, file.size());
  for (uint64_t at = ph.p_offset; at + sizeof(Elf64_Nhdr) <= end;) {
    Elf64_Nhdr nh;
    std::memcpy(&nh, file.data() + at, sizeof(nh));
    const uint64_t name = at + sizeof(nh);
    const uint64_t desc = name + ((uint64_t{nh.n_namesz} + 3) & ~uint64_t{3});
    if (nh.n_type == 18 && nh.n_namesz == 4 && desc + 4 <= end &&
        file.compare(name, 4, std::string("Xen\0", 4)) == 0) {
      uint64_t value = 0;  // 4 or 8 bytes, little-endian
      std::memcpy(&value, file.data() + desc, std::min<uint64_t>({nh.n_descsz, 8, end - desc}));
      return value;
    }
    at = desc + ((uint64_t{nh.n_descsz} + 3) & ~uint64_t{3});
  }
  return std::nullopt;
}

VmlinuxFacts ReadVmlinuxFacts(const std::string& file) {
  VmlinuxFacts facts;
  Elf64_Ehdr eh;
  if (file.size() < sizeof(eh)) return facts;
  std::memcpy(&eh, file.data(), sizeof(eh));
  facts.entry = eh.e_entry;
  bool first = true;
  for (uint64_t i = 0; i < eh.e_phnum && eh.e_phoff + (i + 1) * sizeof(Elf64_Phdr) <= file.size();
       ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof(ph), sizeof(ph));
    if (ph.p_type == PT_LOAD) {
      if (first) {
        facts.first_offset = ph.p_offset;
        facts.first_paddr = ph.p_paddr;
        first = false;
      }
      facts.end = ph.p_paddr + ph.p_memsz;
    } else if (ph.p_type == PT_NOTE && !facts.pvh_entry) {
      facts.pvh_entry = PvhEntryNote(file, ph);
    }
  }
  return facts;
}

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

TEST_F(KernelLoaderTest, GuestVmlinux_Linux64EntryAtStartup64) {
  const std::string vmlinux = kite::testing::FindGuestKernel();
  KITE_REQUIRE_GUEST_KERNEL(vmlinux);
  std::string file = kite::testing::ReadFile(vmlinux);
  VmlinuxFacts facts = ReadVmlinuxFacts(file);
  EXPECT_EQ(facts.entry, 0x1000000u);  // phys_startup_64 at 16 MiB (CONFIG_PHYSICAL_START)
  GuestMemory memory = testing::MakeMemory(256 << 20);
  Result<BootPlan> plan =
      LoadKernel(memory, {.kernel_path = vmlinux, .cmdline = "console=ttyS0", .prefer_pvh = false});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, GuestAddr(facts.entry));
  EXPECT_EQ(plan->kernel_kind, "ELF vmlinux");
  EXPECT_EQ(plan->kernel_end, facts.end);  // last PT_LOAD: p_paddr + p_memsz
  // The first PT_LOAD is at its p_paddr, 16 MiB.
  EXPECT_EQ(facts.first_paddr, 0x1000000u);
  std::string loaded(4096, '\0');
  ASSERT_TRUE(memory.Read(GuestAddr(facts.first_paddr), loaded.data(), loaded.size()).has_value());
  EXPECT_EQ(loaded, file.substr(facts.first_offset, 4096));
  BootParams bp = memory.ReadObj<BootParams>(plan->boot_info).value();
  EXPECT_EQ(Unpacked(bp.hdr.boot_flag), kBootFlag);
  EXPECT_EQ(Unpacked(bp.hdr.header), kHdrSMagic);
  EXPECT_EQ(Unpacked(bp.hdr.cmd_line_ptr), layout::kCmdlineAddr);
  EXPECT_EQ(Unpacked(bp.hdr.cmdline_size), kLinuxCmdlineSize);
  ASSERT_EQ(Unpacked(bp.e820_entries), 3);
  EXPECT_EQ(Unpacked(bp.e820_table[2].addr), layout::kHighMemStart);
  EXPECT_EQ(Unpacked(bp.e820_table[2].size), (256u << 20) - layout::kHighMemStart);
}

TEST_F(KernelLoaderTest, GuestVmlinux_PvhNoteFound) {
  const std::string vmlinux = kite::testing::FindGuestKernel();
  KITE_REQUIRE_GUEST_KERNEL(vmlinux);
  VmlinuxFacts facts = ReadVmlinuxFacts(kite::testing::ReadFile(vmlinux));
  ASSERT_TRUE(facts.pvh_entry.has_value()) << vmlinux << " has no PVH note (CONFIG_PVH)";
  GuestMemory memory = testing::MakeMemory(256 << 20);
  kite::testing::WriteFile(dir_.File("initrd"), std::string(8192, 'i'));
  Result<BootPlan> plan = LoadKernel(memory, {.kernel_path = vmlinux,
                                              .initrd_path = dir_.File("initrd"),
                                              .cmdline = "quiet",
                                              .acpi_rsdp = layout::kRsdpAddr});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kPvh);
  EXPECT_EQ(plan->entry, GuestAddr(*facts.pvh_entry));  // pvh_start_xen
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

TEST_F(KernelLoaderTest, GuestVmlinux_RamTooSmall_Refused) {
  const std::string vmlinux = kite::testing::FindGuestKernel();
  KITE_REQUIRE_GUEST_KERNEL(vmlinux);
  ExpectRefused({.kernel_path = vmlinux}, "is not inside guest RAM");
}

TEST_F(KernelLoaderTest, GuestBzImage_Loads) {
  const std::string bzimage = kite::testing::FindGuestBzImage();
  KITE_REQUIRE_GUEST_KERNEL(bzimage);
  GuestMemory memory = testing::MakeMemory(256 << 20);
  Result<BootPlan> plan = LoadKernel(memory, {.kernel_path = bzimage, .cmdline = "console=ttyS0"});
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, GuestAddr(0x100200));
  EXPECT_EQ(plan->kernel_kind, "bzImage");
  BootParams bp = memory.ReadObj<BootParams>(plan->boot_info).value();
  EXPECT_GE(Unpacked(bp.hdr.version), 0x020c);
  EXPECT_EQ(Unpacked(bp.hdr.type_of_loader), 0xff);
  EXPECT_EQ(Unpacked(bp.hdr.code32_start), 0x100000u);
  EXPECT_TRUE(Unpacked(bp.hdr.xloadflags) & kXlfKernel64);
  EXPECT_EQ(Unpacked(bp.hdr.cmd_line_ptr), layout::kCmdlineAddr);
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
