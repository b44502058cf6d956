// GuestMemory::Discard: guest RAM given back to the host (guest_memory.h). The virtio-balloon
// device calls it for the pages the guest inflated and the free pages it reports.
//
// Which call releases what:
//   * private memory (anonymous 4 KiB pages, anonymous hugetlb, a restored snapshot's
//     MAP_PRIVATE view of its memory file): madvise(MADV_DONTNEED). The pages leave the
//     process at once (RSS drops); the next touch faults in a zero page (hugetlb: a fresh huge
//     page from the pool; a snapshot view: the file's page again).
//   * shared memory (a memfd, `shared=on`, 4 KiB or hugetlb): fallocate(PUNCH_HOLE |
//     KEEP_SIZE) on the memfd, which frees the pages in the file and unmaps them from every
//     process that maps it (another process sharing the RAM sees zeros too). MADV_DONTNEED
//     alone would only unmap them here and free nothing.
//   * huge pages: only a whole huge page can be released; the caller decides when all of one
//     is free (balloon.cc keeps a bitmap of inflated 4 KiB pages per huge page). A huge page
//     given back returns to the host's pool: if the pool is empty when the guest touches it
//     again, the fault fails (the guest's vCPU gets an error, kite's own access SIGBUS) — the
//     price of returning reserved memory, as with QEMU.
#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>

#include "base/units.h"
#include "vmm/guest_memory.h"

namespace kite {

Result<uint64_t> GuestMemory::Discard(std::span<uint8_t> host) const {
  if (host.empty() || discard_ == DiscardKind::kNone) return uint64_t{0};
  const auto begin = reinterpret_cast<uintptr_t>(host.data());
  for (size_t i = 0; i < regions_.size(); ++i) {
    const MemoryRegion& r = regions_[i];
    const auto base = reinterpret_cast<uintptr_t>(r.host);
    if (begin < base || begin - base > r.size || host.size() > r.size - (begin - base)) continue;
    // Mappings start on a page boundary: offsets into the region align as addresses do.
    const uint64_t off = begin - base;
    const uint64_t first = (off + map_align_ - 1) / map_align_ * map_align_;
    const uint64_t last = (off + host.size()) / map_align_ * map_align_;
    if (first >= last) return uint64_t{0};
    const uint64_t len = last - first;
    if (discard_ == DiscardKind::kSharedFd) {
      if (::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(memfd_offsets_[i] + first), static_cast<off_t>(len)) < 0) {
        return SysErr("fallocate(PUNCH_HOLE) of " + FormatSize(len) + " of guest RAM");
      }
    } else if (::madvise(r.host + first, len, MADV_DONTNEED) < 0) {
      return SysErr("madvise(MADV_DONTNEED) of " + FormatSize(len) + " of guest RAM");
    }
    return len;
  }
  return Err("discard of a range that is not guest RAM");
}

}  // namespace kite
