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
  // Maps anonymous memory (MAP_NORESERVE, lazily populated) for `size` bytes of RAM laid out
  // below and above the 32-bit MMIO hole [kMmioHoleStart, 4 GiB) — see vmm/layout.h.
  static Result<GuestMemory> Create(uint64_t size);
  // Wraps memory the caller owns (tests, snapshot restore with a file mapping). Regions must
  // not overlap; they are not unmapped by the destructor.
  static Result<GuestMemory> FromRegions(std::vector<MemoryRegion> regions);
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
  // One past the highest guest-physical RAM address.
  GuestAddr end() const;

  // True when [addr, addr + len) lies inside one region (len 0: addr inside or at a region end).
  bool IsValidRange(GuestAddr addr, uint64_t len) const;

  // Host view of [addr, addr + len) when it lies inside one region; empty span otherwise
  // (also for len 0 at an invalid address). The only sanctioned raw pointer into the guest.
  std::span<uint8_t> Slice(GuestAddr addr, uint64_t len) const;

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

  std::vector<MemoryRegion> regions_;  // sorted by guest_base
  bool owned_ = false;
  std::string backing_path_;
};

}  // namespace kite
