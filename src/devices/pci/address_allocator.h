// Allocators for the resources devices take on a bus that changes at run time: address
// ranges (BAR windows) and numbers (interrupt GSIs). Both hand out the lowest free fit and
// take it back with Free, so a device removed and added again can sit where an earlier one
// left.
//
// Threads: not thread-safe; the VMM allocates on the thread that adds or removes devices.
#pragma once

#include <cstdint>
#include <map>
#include <set>

#include "base/result.h"

namespace kite::pci {

class AddressAllocator {
 public:
  AddressAllocator(uint64_t base, uint64_t size) : base_(base), size_(size) {}
  // The lowest `size`-byte range aligned to `alignment` (a power of two) that is free.
  Result<uint64_t> Allocate(uint64_t size, uint64_t alignment);
  // Gives back the range Allocate returned at `address`; false when there is none.
  bool Free(uint64_t address);
  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }

 private:
  uint64_t base_;
  uint64_t size_;
  std::map<uint64_t, uint64_t> used_;  // start -> size
};

class IdAllocator {
 public:
  // Numbers first..last, inclusive.
  IdAllocator(uint32_t first, uint32_t last) : first_(first), last_(last) {}
  Result<uint32_t> Allocate();
  bool Free(uint32_t id);

 private:
  uint32_t first_;
  uint32_t last_;
  std::set<uint32_t> used_;
};

}  // namespace kite::pci
