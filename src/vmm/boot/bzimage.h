// bzImage parsing (BAD_INPUTS K1-K3): the checks on a bzImage's setup header
// (Documentation/arch/x86/boot.rst), done before anything is written to guest memory. kite
// enters a bzImage at its 64-bit entry point, so it needs boot protocol 2.12+ with
// XLF_KERNEL_64; the protected-mode part is loaded at code32_start (1 MiB).
#pragma once

#include <cstdint>
#include <span>

#include "base/result.h"
#include "vmm/boot/boot_params.h"
#include "vmm/boot/kernel_file.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

inline constexpr uint16_t kMinBzImageProtocol = 0x020c;  // 2.12: xloadflags
inline constexpr uint64_t kBzImage64BitEntryOffset = 0x200;

struct BzImageKernel {
  SetupHeader hdr{};          // the file's setup header; bytes past its end are zero
  uint64_t setup_size = 0;    // (setup_sects + 1) * 512: where the protected-mode part starts
  uint64_t load_addr = 0;     // code32_start
  uint64_t payload_size = 0;  // the protected-mode part: file size - setup_size
  uint64_t kernel_end = 0;    // including init_size (room to decompress)
};

// True when `head` has "HdrS" at offset 0x202.
bool HasBzImageMagic(std::span<const uint8_t> head);

// Checks the setup header against the file and guest RAM; writes nothing.
[[nodiscard]] Result<BzImageKernel> ParseBzImage(const KernelFile& file, const GuestMemory& memory);

// Copies the protected-mode part to load_addr.
[[nodiscard]] Result<void> LoadBzImage(const KernelFile& file, const GuestMemory& memory,
                                       const BzImageKernel& kernel);

}  // namespace kite::boot
