#include "vmm/guest_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "base/units.h"
#include "vmm/layout.h"

namespace kite {

namespace {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26  // linux/memfd.h, which clashes with glibc's sys/mman.h
#endif

uint64_t AlignUp(uint64_t value, uint64_t align) {
  return (value + align - 1) / align * align;
}

int HugeFlag(uint64_t page, int shift_base) {
  return (page == (1ull << 30) ? 30 : 21) << shift_base;
}

// "the 2 MiB pool has 10 free pages" from sysfs, or "" when it cannot be read (a jail).
std::string PoolReport(uint64_t page) {
  std::string dir = "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(page >> 10) + "kB/";
  std::FILE* f = std::fopen((dir + "free_hugepages").c_str(), "re");
  if (f == nullptr) return "";
  unsigned long free_pages = 0;
  int got = std::fscanf(f, "%lu", &free_pages);
  std::fclose(f);
  if (got != 1) return "";
  return "; the " + FormatSize(page) + " pool has " + std::to_string(free_pages) + " free pages (" +
         dir + "nr_hugepages sets its size)";
}

Result<void> Populate(uint8_t* host, uint64_t len) {
  if (::madvise(host, len, MADV_POPULATE_WRITE) == 0) return {};
  if (errno != EINVAL) return SysErr("preallocating " + FormatSize(len) + " of guest RAM");
  // A kernel before 5.14: touch one byte per page (the memory is still all zero).
  for (uint64_t off = 0; off < len; off += 4096) {
    reinterpret_cast<volatile uint8_t*>(host)[off] = 0;
  }
  return {};
}

}  // namespace

Result<GuestMemory> GuestMemory::Create(uint64_t size, const Backing& backing) {
  if (size == 0) return Err("guest memory size must be greater than zero");
  if (size % 4096 != 0) return Err("guest memory size must be a multiple of 4 KiB");
  if (size > (1ull << 46)) return Err("guest memory size larger than 64 TiB");
  const uint64_t page = backing.hugepage_size == 0 ? 4096 : backing.hugepage_size;
  if (page != 4096 && page != (2ull << 20) && page != (1ull << 30)) {
    return Err("huge page size " + std::to_string(page) + " (expected 2 MiB or 1 GiB)");
  }
  if (size % page != 0) {
    return Err("guest memory size " + FormatSize(size) + " is not a multiple of the page size " +
               FormatSize(page));
  }
  std::vector<std::pair<uint64_t, uint64_t>> layout;  // (guest base, size)
  uint64_t below_hole = std::min(size, layout::kMmioHoleStart);
  layout.emplace_back(0, below_hole);
  if (size > below_hole) layout.emplace_back(layout::kHighRamStart, size - below_hole);

  GuestMemory memory;
  memory.owned_ = true;
  memory.map_align_ = page;
  memory.discard_ = backing.shared ? DiscardKind::kSharedFd : DiscardKind::kPrivate;
  const bool huge = backing.hugepage_size != 0;
  if (backing.shared) {
    unsigned flags = MFD_CLOEXEC | (huge ? MFD_HUGETLB | HugeFlag(page, MFD_HUGE_SHIFT) : 0);
    memory.memfd_ = UniqueFd(::memfd_create("kite-guest-ram", flags));
    if (!memory.memfd_) return SysErr("memfd_create for guest RAM");
    uint64_t file_size = 0;
    for (auto [base, len] : layout) file_size += AlignUp(len, page);
    if (::ftruncate(memory.memfd_.get(), static_cast<off_t>(file_size)) < 0) {
      return SysErr("sizing the guest RAM memfd to " + FormatSize(file_size));
    }
  }
  uint64_t file_offset = 0;
  for (auto [base, len] : layout) {
    int flags = backing.shared ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS;
    if (huge && !backing.shared) flags |= MAP_HUGETLB | HugeFlag(page, MAP_HUGE_SHIFT);
    // Without MAP_NORESERVE a hugetlb mapping reserves its pages now.
    if (!huge) flags |= MAP_NORESERVE;
    void* host = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, memory.memfd_.get(),
                        backing.shared ? static_cast<off_t>(file_offset) : 0);
    if (host == MAP_FAILED) {
      Error error = SysErr("mapping " + FormatSize(len) + " of guest RAM" +
                           (huge ? " from " + FormatSize(page) + " huge pages" : ""));
      if (huge && (errno == ENOMEM || errno == EINVAL)) {
        uint64_t needed = 0;
        for (auto [b, l] : layout) needed += AlignUp(l, page) / page;
        return Err(error.message() + ": the guest needs " + std::to_string(needed) + " pages" +
                   PoolReport(page));
      }
      return error;
    }
    memory.regions_.push_back({GuestAddr(base), len, static_cast<uint8_t*>(host)});
    memory.memfd_offsets_.push_back(file_offset);
    file_offset += AlignUp(len, page);
    if (backing.prealloc) TRY(Populate(static_cast<uint8_t*>(host), len));
  }
  return memory;
}

Result<void> GuestMemory::SortAndCheck(std::vector<MemoryRegion>& regions) {
  std::sort(regions.begin(), regions.end(), [](const MemoryRegion& a, const MemoryRegion& b) {
    return a.guest_base < b.guest_base;
  });
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegion& r = regions[i];
    if (r.size == 0 || r.host == nullptr) return Err("empty guest memory region");
    if (r.guest_base.value + r.size < r.guest_base.value) return Err("guest memory region wraps");
    if (i > 0 && regions[i - 1].guest_base.value + regions[i - 1].size > r.guest_base.value) {
      return Err("guest memory regions overlap");
    }
  }
  return {};
}

Result<GuestMemory> GuestMemory::FromRegions(std::vector<MemoryRegion> regions,
                                             bool private_anonymous) {
  TRY(SortAndCheck(regions));
  GuestMemory memory;
  memory.regions_ = std::move(regions);
  if (private_anonymous) memory.discard_ = DiscardKind::kPrivate;
  return memory;
}

Result<GuestMemory> GuestMemory::FromMappings(std::vector<MemoryRegion> regions,
                                              std::string backing_path) {
  GuestMemory memory;  // owns the mappings from here on, so an error below unmaps them
  memory.owned_ = true;
  memory.regions_ = std::move(regions);
  memory.backing_path_ = std::move(backing_path);
  memory.discard_ = DiscardKind::kPrivate;  // MAP_PRIVATE: MADV_DONTNEED drops our copies
  for (const MemoryRegion& r : memory.regions_) {
    if (r.host == nullptr) return Err("guest memory mapping without an address");
  }
  TRY(SortAndCheck(memory.regions_));
  return memory;
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : regions_(std::move(other.regions_)),
      owned_(other.owned_),
      map_align_(other.map_align_),
      memfd_(std::move(other.memfd_)),
      memfd_offsets_(std::move(other.memfd_offsets_)),
      discard_(other.discard_),
      backing_path_(std::move(other.backing_path_)) {
  other.regions_.clear();
  other.discard_ = DiscardKind::kNone;
  other.owned_ = false;
  other.backing_path_.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this != &other) {
    Unmap();
    regions_ = std::move(other.regions_);
    owned_ = other.owned_;
    map_align_ = other.map_align_;
    memfd_ = std::move(other.memfd_);
    memfd_offsets_ = std::move(other.memfd_offsets_);
    discard_ = other.discard_;
    backing_path_ = std::move(other.backing_path_);
    other.regions_.clear();
    other.discard_ = DiscardKind::kNone;
    other.owned_ = false;
    other.backing_path_.clear();
  }
  return *this;
}

GuestMemory::~GuestMemory() {
  Unmap();
}

void GuestMemory::Unmap() {
  if (owned_) {
    for (const MemoryRegion& r : regions_) {
      if (r.host != nullptr && r.size != 0) ::munmap(r.host, AlignUp(r.size, map_align_));
    }
  }
  regions_.clear();
  owned_ = false;
  map_align_ = 4096;
  memfd_.Reset();
  memfd_offsets_.clear();
  discard_ = DiscardKind::kNone;
  backing_path_.clear();
}

uint64_t GuestMemory::total_size() const {
  uint64_t total = 0;
  for (const MemoryRegion& r : regions_) total += r.size;
  return total;
}

GuestAddr GuestMemory::end() const {
  return regions_.empty() ? GuestAddr(0) : regions_.back().guest_base + regions_.back().size;
}

const MemoryRegion* GuestMemory::Find(GuestAddr addr) const {
  for (const MemoryRegion& r : regions_) {
    if (addr.value >= r.guest_base.value && addr.value - r.guest_base.value < r.size) return &r;
  }
  return nullptr;
}

bool GuestMemory::IsValidRange(GuestAddr addr, uint64_t len) const {
  for (const MemoryRegion& r : regions_) {
    if (addr.value < r.guest_base.value) continue;
    uint64_t off = addr.value - r.guest_base.value;
    if (off <= r.size && len <= r.size - off) return true;
  }
  return false;
}

std::span<uint8_t> GuestMemory::Slice(GuestAddr addr, uint64_t len) const {
  for (const MemoryRegion& r : regions_) {
    if (addr.value < r.guest_base.value) continue;
    uint64_t off = addr.value - r.guest_base.value;
    if (off <= r.size && len <= r.size - off) return {r.host + off, static_cast<size_t>(len)};
  }
  return {};
}

Result<void> GuestMemory::Read(GuestAddr addr, void* dst, uint64_t len) const {
  auto* out = static_cast<uint8_t*>(dst);
  while (len > 0) {
    const MemoryRegion* r = Find(addr);
    if (r == nullptr) return Err("guest read outside RAM at 0x" + ToHex(addr.value));
    uint64_t off = addr.value - r->guest_base.value;
    uint64_t chunk = std::min(len, r->size - off);
    std::memcpy(out, r->host + off, chunk);
    out += chunk;
    len -= chunk;
    addr = addr + chunk;
  }
  return {};
}

Result<void> GuestMemory::Write(GuestAddr addr, const void* src, uint64_t len) const {
  // Check the whole range first so that a refused write changes nothing.
  GuestAddr a = addr;
  for (uint64_t left = len; left > 0;) {
    const MemoryRegion* r = Find(a);
    if (r == nullptr) return Err("guest write outside RAM at 0x" + ToHex(a.value));
    uint64_t chunk = std::min(left, r->size - (a.value - r->guest_base.value));
    a = a + chunk;
    left -= chunk;
  }
  const auto* in = static_cast<const uint8_t*>(src);
  while (len > 0) {
    const MemoryRegion* r = Find(addr);
    if (r == nullptr) return Err("guest write outside RAM at 0x" + ToHex(addr.value));
    uint64_t off = addr.value - r->guest_base.value;
    uint64_t chunk = std::min(len, r->size - off);
    std::memcpy(r->host + off, in, chunk);
    in += chunk;
    len -= chunk;
    addr = addr + chunk;
  }
  return {};
}

}  // namespace kite
