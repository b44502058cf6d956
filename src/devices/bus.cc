#include "devices/bus.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "base/log.h"
#include "base/units.h"

namespace kite {

Result<void> Bus::Register(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device) {
  if (length == 0 || base + length < base) {
    return Err(name_ + ": invalid range 0x" + ToHex(base) + "+0x" + ToHex(length));
  }
  std::unique_lock lock(mutex_);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                             [](const Range& r, uint64_t b) { return r.base < b; });
  bool overlaps_next = it != ranges_.end() && it->base < base + length;
  bool overlaps_prev = it != ranges_.begin() && std::prev(it)->base + std::prev(it)->length > base;
  if (overlaps_next || overlaps_prev) {
    return Err(name_ + ": range 0x" + ToHex(base) + "+0x" + ToHex(length) +
               " overlaps a registered device");
  }
  ranges_.insert(it, Range{base, length, std::move(device)});
  return {};
}

bool Bus::Unregister(uint64_t base) {
  std::unique_lock lock(mutex_);
  auto it = std::find_if(ranges_.begin(), ranges_.end(),
                         [base](const Range& r) { return r.base == base; });
  if (it == ranges_.end()) return false;
  ranges_.erase(it);
  return true;
}

std::shared_ptr<BusDevice> Bus::Find(uint64_t addr, uint64_t len, uint64_t* offset) const {
  std::shared_lock lock(mutex_);
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  --it;
  uint64_t off = addr - it->base;
  if (off >= it->length || len > it->length - off) return nullptr;
  *offset = off;
  return it->device;
}

bool Bus::Read(uint64_t addr, std::span<uint8_t> data) {
  uint64_t offset = 0;
  if (auto device = Find(addr, data.size(), &offset)) {
    device->Read(offset, data);
    return true;
  }
  std::memset(data.data(), 0xff, data.size());
  unclaimed_reads_.fetch_add(1, std::memory_order_relaxed);
  KITE_LOG_RATELIMITED(Debug, "%s: read of %zu bytes at unclaimed 0x%llx", name_.c_str(),
                       data.size(), static_cast<unsigned long long>(addr));
  return false;
}

bool Bus::Write(uint64_t addr, std::span<const uint8_t> data) {
  uint64_t offset = 0;
  if (auto device = Find(addr, data.size(), &offset)) {
    device->Write(offset, data);
    return true;
  }
  unclaimed_writes_.fetch_add(1, std::memory_order_relaxed);
  KITE_LOG_RATELIMITED(Debug, "%s: write of %zu bytes at unclaimed 0x%llx", name_.c_str(),
                       data.size(), static_cast<unsigned long long>(addr));
  return false;
}

}  // namespace kite
