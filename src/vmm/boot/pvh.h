// The PVH boot ABI's start-of-day structures (xen/include/public/arch-x86/hvm/start_info.h,
// version 1): hvm_start_info with its memory map and module list, as kite writes them at
// layout::kPvhStartInfoAddr for a kernel entered through XEN_ELFNOTE_PHYS32_ENTRY.
#pragma once

#include <cstdint>
#include <span>

#include "base/result.h"
#include "vmm/boot/boot_params.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

inline constexpr uint32_t kHvmStartMagic = 0x336ec578;  // "xEn3" with the 0x80 bit of "E" set

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version 1
  uint32_t memmap_entries;
  uint32_t reserved;
};

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};

struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // e820 types (1 = RAM, 2 = reserved)
  uint32_t reserved;
};

struct PvhParams {
  GuestAddr cmdline{};
  GuestAddr initrd{};  // with initrd_size 0: no module
  uint64_t initrd_size = 0;
  uint64_t acpi_rsdp = 0;
  std::span<const E820Entry> memmap{};
};

// Writes hvm_start_info, then its memory map, then the module list, from kPvhStartInfoAddr up
// to (not into) the zero page; returns the start_info address (the kernel's ebx).
[[nodiscard]] Result<GuestAddr> WritePvhStartInfo(const GuestMemory& memory, const PvhParams& p);

}  // namespace kite::boot
