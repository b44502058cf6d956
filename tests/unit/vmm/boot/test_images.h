// Synthetic kernel images for the boot tests: a minimal valid x86_64 ELF (optionally with a
// PVH note) and a minimal valid bzImage, built as bytes so each test can break one field.
#pragma once

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/boot/boot_params.h"
#include "vmm/guest_memory.h"

namespace kite::boot::testing {

// A field of a packed struct (boot_params, its setup header, e820 entries) as a value: gtest's
// EXPECT_EQ takes its arguments by reference, and a reference to a misaligned field is
// undefined behaviour (UBSan in the sanitizer build).
template <typename T>
constexpr T Unpacked(T value) {
  return value;
}

struct TestSegment {
  uint64_t paddr = 0;
  std::string data;
  uint64_t memsz = 0;  // 0: data.size()
};

struct ElfOptions {
  uint64_t entry = 0x200000;
  std::vector<TestSegment> segments = {{0x200000, std::string(0x100, '\x90'), 0x2000}};
  bool pvh_note = false;
  uint64_t pvh_entry = 0x200010;
  uint32_t pvh_desc_size = 8;  // Linux emits a pointer-sized value
};

// ELF header at 0, program headers at 64 (PT_NOTE first when pvh_note), note data, then the
// segments' bytes at 4 KiB-aligned offsets.
std::string MakeElf(const ElfOptions& options = {});
Elf64_Ehdr* ElfHeader(std::string& image);
Elf64_Phdr* ProgramHeader(std::string& image, size_t index);
// Offset of the first note header in a MakeElf image with pvh_note.
inline constexpr size_t kNoteOffset = 64 + 4 * sizeof(Elf64_Phdr);

inline constexpr uint64_t kTestSetupSects = 7;  // setup code: 8 * 512 = 4 KiB
inline constexpr uint64_t kTestPayloadSize = 0x3000;

// A bzImage, protocol 2.15, code32_start 1 MiB, pref_address 2 MiB, init_size 1 MiB,
// cmdline_size 255, initrd_addr_max 0x7fffffff, XLF_KERNEL_64.
std::string MakeBzImage();
SetupHeader* BzHeader(std::string& image);

// A fresh 16 MiB guest.
GuestMemory MakeMemory(uint64_t size = 16 << 20);
// True when every byte of guest RAM is zero.
bool AllZero(const GuestMemory& memory);

}  // namespace kite::boot::testing
