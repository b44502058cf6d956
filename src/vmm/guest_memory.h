// Guest physical memory: the one place where guest-physical addresses become host pointers.
//
// Every translation checks the whole range [addr, addr + len) against one region, with
// overflow-checked arithmetic, and never aborts on a guest value: callers get an Error (for
// VMM-built data) or a nullopt-like failure they turn into a guest-visible error. A range
// that crosses from one region into another (for example across the 32-bit MMIO hole) is
// refused as a whole by Slice(); Read()/Write() copy region by region.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kite {

// A guest-physical address. A distinct type so that host offsets, guest addresses and
// lengths cannot be mixed up silently.
struct GuestAddr {
  uint64_t value = 0;

  constexpr GuestAddr() = default;
  constexpr explicit GuestAddr(uint64_t v) : value(v) {}
  constexpr GuestAddr operator+(uint64_t off) const { return GuestAddr(value + off); }
  constexpr auto operator<=>(const GuestAddr&) const = default;
};

struct MemoryRegion {
  GuestAddr guest_base;
  uint64_t size = 0;
  uint8_t* host = nullptr;  // mapping of `size` bytes
};

class GuestMemory {
 public:
  // How the RAM is backed (VmConfig::memory_backing).
  struct Backing {
    uint64_t hugepage_size = 0;  // 0, 2 MiB or 1 GiB: pages from the host's hugetlb pool
    bool prealloc = false;       // fault every page in now (MADV_POPULATE_WRITE)
    bool shared = false;         // a memfd mapped MAP_SHARED (memfd())
  };
  // Maps memory for `size` bytes of RAM laid out below and above the 32-bit MMIO hole
  // [kMmioHoleStart, 4 GiB) — see vmm/layout.h. By default anonymous, MAP_NORESERVE and
  // populated lazily. Huge pages are reserved now: a pool too small for the guest is an error
  // here (naming the pool), never a SIGBUS when the guest first touches a page.
  static Result<GuestMemory> Create(uint64_t size, const Backing& backing);
  static Result<GuestMemory> Create(uint64_t size) { return Create(size, Backing()); }
  // Wraps memory the caller owns (tests, snapshot restore with a file mapping). Regions must
  // not overlap; they are not unmapped by the destructor. `private_anonymous`: they are
  // MAP_PRIVATE | MAP_ANONYMOUS mappings of 4 KiB pages, so Discard() may release them.
  static Result<GuestMemory> FromRegions(std::vector<MemoryRegion> regions,
                                         bool private_anonymous = false);
  // Takes over mmap(2)ed regions (snapshot restore: MAP_PRIVATE views of a memory file); the
  // destructor unmaps them, and so does a failure here. `backing_path` names the file they
  // map, for backing_path().
  static Result<GuestMemory> FromMappings(std::vector<MemoryRegion> regions,
                                          std::string backing_path);

  GuestMemory() = default;
  GuestMemory(GuestMemory&& other) noexcept;
  GuestMemory& operator=(GuestMemory&& other) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  std::span<const MemoryRegion> regions() const { return regions_; }
  // The file the RAM is a private mapping of (FromMappings), or "" (anonymous or foreign
  // memory). A snapshot must never be written over it (BAD_INPUTS.md C13).
  const std::string& backing_path() const { return backing_path_; }
  uint64_t total_size() const;
  // The memfd of shared memory (Backing::shared), -1 otherwise; regions lie in it one after
  // another, each at an offset aligned to the page size.
  int memfd() const { return memfd_.get(); }
  // The size of the pages behind the RAM: 4 KiB, or the huge page size (Backing::hugepage_size).
  uint64_t page_size() const { return map_align_; }
  // One past the highest guest-physical RAM address.
  GuestAddr end() const;

  // True when [addr, addr + len) lies inside one region (len 0: addr inside or at a region end).
  bool IsValidRange(GuestAddr addr, uint64_t len) const;

  // Host view of [addr, addr + len) when it lies inside one region; empty span otherwise
  // (also for len 0 at an invalid address). The only sanctioned raw pointer into the guest.
  std::span<uint8_t> Slice(GuestAddr addr, uint64_t len) const;

  // Gives the host memory behind `host` back to the host (virtio-balloon: inflated pages, free
  // pages the guest reported). `host` must lie inside one region, as Slice() returns it. Only
  // the whole pages of page_size() inside it are released (a huge page only when all of it is
  // in `host`); returns their bytes. How (guest_memory_discard.cc): private memory (anonymous,
  // hugetlb, a restored snapshot's MAP_PRIVATE file view) with madvise(MADV_DONTNEED), shared
  // memory with fallocate(PUNCH_HOLE) on the memfd. Afterwards the guest reads zeros there (a
  // snapshot view: the memory file's bytes) and the host faults pages in again on the next
  // touch. Memory this class does not know how to release (FromRegions without
  // `private_anonymous`) releases nothing and returns 0. An error: the kernel refused.
  Result<uint64_t> Discard(std::span<uint8_t> host) const;

  // Copies, splitting across regions where the range is contiguous in guest-physical space.
  Result<void> Read(GuestAddr addr, void* dst, uint64_t len) const;
  Result<void> Write(GuestAddr addr, const void* src, uint64_t len) const;

  template <typename T>
  Result<T> ReadObj(GuestAddr addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    TRY(Read(addr, &value, sizeof(T)));
    return value;
  }
  template <typename T>
  Result<void> WriteObj(GuestAddr addr, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return Write(addr, &value, sizeof(T));
  }

 private:
  const MemoryRegion* Find(GuestAddr addr) const;
  void Unmap();
  static Result<void> SortAndCheck(std::vector<MemoryRegion>& regions);

  // How Discard() releases pages.
  enum class DiscardKind { kNone, kPrivate, kSharedFd };

  std::vector<MemoryRegion> regions_;  // sorted by guest_base
  bool owned_ = false;
  uint64_t map_align_ = 4096;  // munmap lengths are rounded up to this (the huge page size)
  UniqueFd memfd_;
  std::vector<uint64_t> memfd_offsets_;  // per region, its offset in memfd_ (shared memory)
  DiscardKind discard_ = DiscardKind::kNone;
  std::string backing_path_;
};

}  // namespace kite
