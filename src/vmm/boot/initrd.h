// Initrd placement (BAD_INPUTS K8): where an initrd goes in guest RAM, as a pure function.
#pragma once

#include <cstdint>
#include <span>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite::boot {

struct InitrdLimits {
  uint64_t lowest = 0;    // first byte the initrd may use: the end of the kernel
  uint64_t addr_max = 0;  // last byte it may use (the kernel's initrd_addr_max)
};

// The highest page-aligned address for `size` bytes inside one RAM region, below the 32-bit
// MMIO hole and within `limits`, so it overlaps neither the kernel nor the boot structures
// below 1 MiB. An Error when it does not fit (or size is 0).
[[nodiscard]] Result<GuestAddr> PlaceInitrd(std::span<const MemoryRegion> regions, uint64_t size,
                                            const InitrdLimits& limits);

}  // namespace kite::boot
