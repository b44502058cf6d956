// Initrd placement (K8) as a pure function of the memory regions and limits.
#include "vmm/boot/initrd.h"

#include <gtest/gtest.h>

#include <vector>

#include "vmm/layout.h"

namespace kite::boot {
namespace {

std::vector<MemoryRegion> Regions(uint64_t low, uint64_t high = 0) {
  std::vector<MemoryRegion> regions = {{GuestAddr(0), low, nullptr}};
  if (high) regions.push_back({GuestAddr(layout::kHighRamStart), high, nullptr});
  return regions;
}

TEST(PlaceInitrdTest, Place_TopOfLowRamPageAligned) {
  GuestAddr addr =
      PlaceInitrd(Regions(64 << 20), 5000, {.lowest = 0x200000, .addr_max = UINT32_MAX}).value();
  EXPECT_EQ(addr, GuestAddr((64 << 20) - 0x2000));
}

TEST(PlaceInitrdTest, Place_RamAbove4G_StaysBelowTheHole) {
  GuestAddr addr = PlaceInitrd(Regions(layout::kMmioHoleStart, 1ull << 30), 0x1000,
                               {.lowest = 0x200000, .addr_max = UINT32_MAX})
                       .value();
  EXPECT_EQ(addr, GuestAddr(layout::kMmioHoleStart - 0x1000));
}

TEST(PlaceInitrdTest, Place_ExactFitAboveKernel_Accepted) {
  GuestAddr addr =
      PlaceInitrd(Regions(16 << 20), 0x100000, {.lowest = 15 << 20, .addr_max = UINT32_MAX})
          .value();
  EXPECT_EQ(addr, GuestAddr(15 << 20));
}

TEST(PlaceInitrdTest, K8_OneByteTooBig_Refused) {
  Result<GuestAddr> r =
      PlaceInitrd(Regions(16 << 20), 0x100001, {.lowest = 15 << 20, .addr_max = UINT32_MAX});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("does not fit in guest RAM"), std::string::npos);
}

TEST(PlaceInitrdTest, K8_LargerThanRam_Refused) {
  Result<GuestAddr> r =
      PlaceInitrd(Regions(16 << 20), 1ull << 40, {.lowest = 0, .addr_max = ~0ull});
  EXPECT_FALSE(r.has_value());
}

TEST(PlaceInitrdTest, K8_NeverBelowOneMiB) {
  // Only [0, 1 MiB) would be free below the kernel: the boot structures live there.
  Result<GuestAddr> r = PlaceInitrd(Regions(16 << 20), 0x80000, {.lowest = 0, .addr_max = 0xfffff});
  EXPECT_FALSE(r.has_value());
}

}  // namespace
}  // namespace kite::boot
