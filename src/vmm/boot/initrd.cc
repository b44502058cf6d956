// Initrd placement: as high as possible below 4 GiB (where Linux looks first and where the
// kernel's own allocations are least likely to need the space), page aligned.
#include "vmm/boot/initrd.h"

#include <algorithm>

#include "base/units.h"
#include "vmm/boot/hex.h"
#include "vmm/layout.h"

namespace kite::boot {

Result<GuestAddr> PlaceInitrd(std::span<const MemoryRegion> regions, uint64_t size,
                              const InitrdLimits& limits) {
  constexpr uint64_t kPage = 4096;
  if (size == 0) return Err("initrd is empty");
  uint64_t lowest = std::max(limits.lowest, layout::kHighMemStart);
  lowest = (lowest + kPage - 1) & ~(kPage - 1);
  uint64_t ceiling = std::min(limits.addr_max, layout::kMmioHoleStart - 1) + 1;
  for (auto it = regions.rbegin(); it != regions.rend(); ++it) {
    uint64_t bottom = std::max(it->guest_base.value, lowest);
    uint64_t top = std::min(it->guest_base.value + it->size, ceiling);
    if (top <= bottom || top - bottom < size) continue;
    uint64_t addr = (top - size) & ~(kPage - 1);
    if (addr >= bottom) return GuestAddr(addr);
  }
  uint64_t total = 0;
  for (const MemoryRegion& r : regions) total += r.size;
  return Err("initrd of " + FormatSize(size) + " does not fit in guest RAM (" + FormatSize(total) +
             ") between the kernel end " + Hex(lowest) + " and " + Hex(ceiling));
}

}  // namespace kite::boot
