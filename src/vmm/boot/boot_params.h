// The Linux x86 "zero page" (struct boot_params) and its setup header, as laid out in
// Documentation/arch/x86/boot.rst and zero-page.rst, plus the e820 memory map kite reports.
// Only the fields kite reads or writes are named; the rest is padding at the right offsets
// (checked by static_asserts in boot_params.cc).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;
inline constexpr size_t kE820MaxEntries = 128;  // E820_MAX_ENTRIES_ZEROPAGE

struct [[gnu::packed]] E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

// struct setup_header, at offset 0x1f1 of both the bzImage file and boot_params.
struct [[gnu::packed]] SetupHeader {
  uint8_t setup_sects;  // 0x1f1
  uint16_t root_flags;
  uint32_t syssize;
  uint16_t ram_size;
  uint16_t vid_mode;
  uint16_t root_dev;
  uint16_t boot_flag;  // 0x1fe: 0xaa55
  uint16_t jump;       // 0x200
  uint32_t header;     // 0x202: "HdrS"
  uint16_t version;    // 0x206
  uint32_t realmode_swtch;
  uint16_t start_sys_seg;
  uint16_t kernel_version;
  uint8_t type_of_loader;  // 0x210
  uint8_t loadflags;       // 0x211
  uint16_t setup_move_size;
  uint32_t code32_start;   // 0x214
  uint32_t ramdisk_image;  // 0x218
  uint32_t ramdisk_size;   // 0x21c
  uint32_t bootsect_kludge;
  uint16_t heap_end_ptr;
  uint8_t ext_loader_ver;
  uint8_t ext_loader_type;
  uint32_t cmd_line_ptr;      // 0x228
  uint32_t initrd_addr_max;   // 0x22c
  uint32_t kernel_alignment;  // 0x230
  uint8_t relocatable_kernel;
  uint8_t min_alignment;
  uint16_t xloadflags;    // 0x236
  uint32_t cmdline_size;  // 0x238
  uint32_t hardware_subarch;
  uint64_t hardware_subarch_data;
  uint32_t payload_offset;
  uint32_t payload_length;
  uint64_t setup_data;
  uint64_t pref_address;  // 0x258
  uint32_t init_size;     // 0x260
  uint32_t handover_offset;
  uint32_t kernel_info_offset;
};

inline constexpr uint64_t kSetupHeaderOffset = 0x1f1;
inline constexpr uint16_t kBootFlag = 0xaa55;
inline constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
inline constexpr uint8_t kLoaderTypeUndefined = 0xff;
inline constexpr uint8_t kLoadedHigh = 0x01;    // loadflags
inline constexpr uint16_t kXlfKernel64 = 0x01;  // xloadflags: has the 64-bit entry at +0x200
inline constexpr uint32_t kLinuxCmdlineSize =
    2048;  // x86 COMMAND_LINE_SIZE, for kernels without a header

struct [[gnu::packed]] BootParams {
  uint8_t screen_info_etc[0x70];
  uint64_t acpi_rsdp_addr;  // 0x070
  uint8_t pad1[0xc0 - 0x78];
  uint32_t ext_ramdisk_image;  // 0x0c0
  uint32_t ext_ramdisk_size;   // 0x0c4
  uint32_t ext_cmd_line_ptr;   // 0x0c8
  uint8_t pad2[0x1e8 - 0xcc];
  uint8_t e820_entries;  // 0x1e8
  uint8_t pad3[0x1f1 - 0x1e9];
  SetupHeader hdr;  // 0x1f1
  uint8_t pad4[0x2d0 - 0x1f1 - sizeof(SetupHeader)];
  E820Entry e820_table[kE820MaxEntries];  // 0x2d0
  uint8_t pad5[0x1000 - 0xcd0];
};

// The e820 map for `regions`: RAM below the EBDA, the EBDA/BIOS area [kEbdaStart, 1 MiB)
// reserved (MP and ACPI tables live there), RAM from 1 MiB up to the MMIO hole, RAM above
// 4 GiB. Sorted by address.
[[nodiscard]] Result<std::vector<E820Entry>> BuildE820(std::span<const MemoryRegion> regions);

struct ZeroPageParams {
  const SetupHeader* kernel_hdr = nullptr;  // a bzImage's own setup header; nullptr: ELF vmlinux
  GuestAddr cmdline{};
  GuestAddr initrd{};  // with initrd_size 0: none
  uint64_t initrd_size = 0;
  uint64_t acpi_rsdp = 0;             // 0: not set
  std::span<const E820Entry> e820{};  // at most kE820MaxEntries
};

// boot_params for the 64-bit boot protocol: the kernel's setup header (or a minimal one for a
// vmlinux), type_of_loader 0xff, command line, initrd, RSDP and the e820 map.
BootParams BuildZeroPage(const ZeroPageParams& p);

// Checks a kernel command line (K9): no NUL byte, at most `max_len` bytes (the kernel's
// cmdline_size, without the terminating NUL) and at most what fits at kCmdlineAddr.
[[nodiscard]] Result<void> CheckCmdline(std::string_view cmdline, uint64_t max_len);
// Writes the (checked) command line NUL-terminated at kCmdlineAddr and returns that address.
[[nodiscard]] Result<GuestAddr> WriteCmdline(const GuestMemory& memory, std::string_view cmdline);

}  // namespace kite::boot
