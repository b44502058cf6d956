#include "vmm/guest_memory.h"

#include <sys/mman.h>

#include <algorithm>

#include "base/units.h"
#include "vmm/layout.h"

namespace kite {

Result<GuestMemory> GuestMemory::Create(uint64_t size) {
  if (size == 0) return Err("guest memory size must be greater than zero");
  if (size % 4096 != 0) return Err("guest memory size must be a multiple of 4 KiB");
  if (size > (1ull << 46)) return Err("guest memory size larger than 64 TiB");
  std::vector<std::pair<uint64_t, uint64_t>> layout;  // (guest base, size)
  uint64_t below_hole = std::min(size, layout::kMmioHoleStart);
  layout.emplace_back(0, below_hole);
  if (size > below_hole) layout.emplace_back(layout::kHighRamStart, size - below_hole);

  GuestMemory memory;
  memory.owned_ = true;
  for (auto [base, len] : layout) {
    void* host = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED) return SysErr("mapping " + std::to_string(len) + " bytes of guest RAM");
    memory.regions_.push_back({GuestAddr(base), len, static_cast<uint8_t*>(host)});
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

Result<GuestMemory> GuestMemory::FromRegions(std::vector<MemoryRegion> regions) {
  TRY(SortAndCheck(regions));
  GuestMemory memory;
  memory.regions_ = std::move(regions);
  return memory;
}

Result<GuestMemory> GuestMemory::FromMappings(std::vector<MemoryRegion> regions,
                                              std::string backing_path) {
  GuestMemory memory;  // owns the mappings from here on, so an error below unmaps them
  memory.owned_ = true;
  memory.regions_ = std::move(regions);
  memory.backing_path_ = std::move(backing_path);
  for (const MemoryRegion& r : memory.regions_) {
    if (r.host == nullptr) return Err("guest memory mapping without an address");
  }
  TRY(SortAndCheck(memory.regions_));
  return memory;
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : regions_(std::move(other.regions_)),
      owned_(other.owned_),
      backing_path_(std::move(other.backing_path_)) {
  other.regions_.clear();
  other.owned_ = false;
  other.backing_path_.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this != &other) {
    Unmap();
    regions_ = std::move(other.regions_);
    owned_ = other.owned_;
    backing_path_ = std::move(other.backing_path_);
    other.regions_.clear();
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
      if (r.host != nullptr && r.size != 0) ::munmap(r.host, r.size);
    }
  }
  regions_.clear();
  owned_ = false;
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
