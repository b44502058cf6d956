// AddressAllocator and IdAllocator (src/devices/pci/address_allocator.cc): lowest fit,
// alignment, free and reuse, exhaustion.
#include "devices/pci/address_allocator.h"

#include <gtest/gtest.h>

namespace kite::pci {
namespace {

TEST(AddressAllocator, LowestAlignedFit_FreeAndReuse) {
  AddressAllocator a(0xe8000000, 0x100000);
  EXPECT_EQ(*a.Allocate(0x8000, 0x8000), 0xe8000000u);
  EXPECT_EQ(*a.Allocate(0x1000, 0x1000), 0xe8008000u);
  EXPECT_EQ(*a.Allocate(0x8000, 0x8000), 0xe8010000u) << "aligned past the 4 KiB one";
  EXPECT_TRUE(a.Free(0xe8000000));
  EXPECT_FALSE(a.Free(0xe8000000));
  EXPECT_EQ(*a.Allocate(0x4000, 0x4000), 0xe8000000u) << "the freed range comes back";
}

TEST(AddressAllocator, Exhausted_AndBadRequests_Refused) {
  AddressAllocator a(0x1000, 0x3000);
  EXPECT_TRUE(a.Allocate(0x2000, 0x1000));
  EXPECT_FALSE(a.Allocate(0x2000, 0x1000));
  EXPECT_TRUE(a.Allocate(0x1000, 0x1000));
  EXPECT_FALSE(a.Allocate(0x1000, 0x1000));
  EXPECT_FALSE(a.Allocate(0, 0x1000));
  EXPECT_FALSE(a.Allocate(0x1000, 0x3000));  // alignment not a power of two
}

TEST(IdAllocator, LowestFree_FreeAndReuse_Exhausted) {
  IdAllocator ids(24, 26);
  EXPECT_EQ(*ids.Allocate(), 24u);
  EXPECT_EQ(*ids.Allocate(), 25u);
  EXPECT_EQ(*ids.Allocate(), 26u);
  EXPECT_FALSE(ids.Allocate());
  EXPECT_TRUE(ids.Free(25));
  EXPECT_EQ(*ids.Allocate(), 25u);
  EXPECT_FALSE(ids.Free(99));
}

}  // namespace
}  // namespace kite::pci
