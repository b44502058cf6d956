// Guest memory helpers for the boot tests (the images: kernel_images.cc).
#include "test_images.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>

namespace kite::boot::testing {

GuestMemory MakeMemory(uint64_t size) {
  Result<GuestMemory> memory = GuestMemory::Create(size);
  EXPECT_TRUE(memory.has_value());
  return std::move(memory).value();
}

bool AllZero(const GuestMemory& memory) {
  // Only resident pages can hold data: a page of anonymous memory never touched is zero.
  // Skipping the others keeps this fast (no fault per page).
  constexpr uint64_t kPage = 4096;
  for (const MemoryRegion& r : memory.regions()) {
    std::vector<unsigned char> resident(r.size / kPage);
    if (::mincore(r.host, r.size, resident.data()) != 0) {
      ADD_FAILURE() << "mincore failed";
      return false;
    }
    for (uint64_t page = 0; page < resident.size(); ++page) {
      if (!(resident[page] & 1)) continue;
      const uint8_t* p = r.host + page * kPage;
      if (std::any_of(p, p + kPage, [](uint8_t b) { return b != 0; })) return false;
    }
  }
  return true;
}

}  // namespace kite::boot::testing
