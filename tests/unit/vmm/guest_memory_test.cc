#include "vmm/guest_memory.h"

#include <gtest/gtest.h>

#include "vmm/layout.h"

namespace kite {
namespace {

TEST(GuestMemory, Create_SplitsAroundMmioHole) {
  auto mem = GuestMemory::Create(layout::kMmioHoleStart + (64ull << 20));
  ASSERT_TRUE(mem) << mem.error().message();
  ASSERT_EQ(mem->regions().size(), 2u);
  EXPECT_EQ(mem->regions()[0].size, layout::kMmioHoleStart);
  EXPECT_EQ(mem->regions()[1].guest_base, GuestAddr(layout::kHighRamStart));
  EXPECT_EQ(mem->end(), GuestAddr(layout::kHighRamStart + (64ull << 20)));
}

TEST(GuestMemory, Create_RefusesBadSizes) {
  EXPECT_FALSE(GuestMemory::Create(0));
  EXPECT_FALSE(GuestMemory::Create(4095));
}

TEST(GuestMemory, Slice_ChecksWholeRange) {
  auto mem = GuestMemory::Create(1 << 20);
  ASSERT_TRUE(mem);
  EXPECT_EQ(mem->Slice(GuestAddr(0), 1 << 20).size(), 1u << 20);
  EXPECT_TRUE(mem->Slice(GuestAddr((1 << 20) - 1), 2).empty());
  EXPECT_TRUE(mem->Slice(GuestAddr(UINT64_MAX), 2).empty());
  EXPECT_TRUE(mem->Slice(GuestAddr(16), UINT64_MAX).empty());
  EXPECT_FALSE(mem->IsValidRange(GuestAddr(16), UINT64_MAX - 8));
}

TEST(GuestMemory, ReadWrite_RoundTripAcrossRegions) {
  std::vector<uint8_t> a(4096), b(4096);
  auto mem = GuestMemory::FromRegions({{GuestAddr(0), 4096, a.data()},
                                       {GuestAddr(4096), 4096, b.data()}});
  ASSERT_TRUE(mem);
  const char text[] = "spans two regions";
  ASSERT_TRUE(mem->Write(GuestAddr(4090), text, sizeof(text)));
  char back[sizeof(text)] = {};
  ASSERT_TRUE(mem->Read(GuestAddr(4090), back, sizeof(back)));
  EXPECT_STREQ(back, text);
  EXPECT_TRUE(mem->Slice(GuestAddr(4090), sizeof(text)).empty());  // no contiguous pointer
}

TEST(GuestMemory, Write_OutsideRam_ChangesNothing) {
  std::vector<uint8_t> a(4096, 0);
  auto mem = GuestMemory::FromRegions({{GuestAddr(0), 4096, a.data()}});
  ASSERT_TRUE(mem);
  std::vector<uint8_t> data(16, 0xaa);
  EXPECT_FALSE(mem->Write(GuestAddr(4088), data.data(), data.size()));
  EXPECT_EQ(a[4088], 0);
}

TEST(GuestMemory, FromRegions_RefusesOverlap) {
  std::vector<uint8_t> a(8192);
  EXPECT_FALSE(GuestMemory::FromRegions({{GuestAddr(0), 8192, a.data()},
                                         {GuestAddr(4096), 4096, a.data()}}));
}

}  // namespace
}  // namespace kite
