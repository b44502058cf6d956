// ELF vmlinux parsing (BAD_INPUTS K4-K6): the checks on an x86_64 ELF kernel's headers,
// program headers and PVH note, done before anything is written to guest memory, and the
// loading of its PT_LOAD segments at their physical addresses.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "vmm/boot/kernel_file.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

inline constexpr uint32_t kXenElfNotePhys32Entry = 18;  // XEN_ELFNOTE_PHYS32_ENTRY
inline constexpr uint16_t kElfMaxPhnum = 64;            // real kernels have ~5
inline constexpr uint64_t kElfMaxNoteSize = 64 * 1024;

// One PT_LOAD segment: file bytes [file_offset, +file_size) go to guest `addr`, followed by
// zeros up to mem_size.
struct LoadSegment {
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  GuestAddr addr;
  uint64_t mem_size = 0;
};

struct ElfKernel {
  GuestAddr entry;  // 64-bit boot protocol entry (e_entry, as a physical address)
  std::optional<GuestAddr> pvh_entry;  // from the XEN_ELFNOTE_PHYS32_ENTRY note
  std::vector<LoadSegment> segments;
  uint64_t start = 0;  // lowest physical address loaded
  uint64_t end = 0;    // one past the highest
};

// True when `head` (the file's first bytes) starts with the ELF magic.
bool HasElfMagic(std::span<const uint8_t> head);

// Checks every header field against the file and guest RAM; writes nothing.
[[nodiscard]] Result<ElfKernel> ParseElf(const KernelFile& file, const GuestMemory& memory);

// Copies the segments' file bytes and zeroes the rest of each (bss).
[[nodiscard]] Result<void> LoadSegments(const KernelFile& file, const GuestMemory& memory,
                                        std::span<const LoadSegment> segments);

}  // namespace kite::boot
