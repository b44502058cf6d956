// AddressAllocator and IdAllocator: lowest free fit, with free. See address_allocator.h.
#include "devices/pci/address_allocator.h"

#include <bit>
#include <string>

#include "base/units.h"

namespace kite::pci {

Result<uint64_t> AddressAllocator::Allocate(uint64_t size, uint64_t alignment) {
  if (size == 0 || alignment == 0 || !std::has_single_bit(alignment)) {
    return Err("allocation of 0x" + ToHex(size) + " bytes aligned to 0x" + ToHex(alignment) +
               ": bad size or alignment");
  }
  uint64_t candidate = (base_ + alignment - 1) & ~(alignment - 1);
  for (const auto& [start, length] : used_) {
    if (candidate < start && start - candidate >= size) break;
    if (start + length > candidate) candidate = (start + length + alignment - 1) & ~(alignment - 1);
  }
  if (candidate < base_ || candidate - base_ > size_ || size_ - (candidate - base_) < size) {
    return Err("no free 0x" + ToHex(size) + "-byte range left in [0x" + ToHex(base_) + ", 0x" +
               ToHex(base_ + size_) + ")");
  }
  used_[candidate] = size;
  return candidate;
}

bool AddressAllocator::Free(uint64_t address) {
  return used_.erase(address) == 1;
}

Result<uint32_t> IdAllocator::Allocate() {
  for (uint64_t id = first_; id <= last_; ++id) {
    if (!used_.contains(static_cast<uint32_t>(id))) {
      used_.insert(static_cast<uint32_t>(id));
      return static_cast<uint32_t>(id);
    }
  }
  return Err("all of " + std::to_string(first_) + ".." + std::to_string(last_) + " are taken");
}

bool IdAllocator::Free(uint32_t id) {
  return used_.erase(id) == 1;
}

}  // namespace kite::pci
