#include "vmm/guest_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

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

// shared=on: the RAM is a memfd another process can map; what the guest writes is in the file.
TEST(GuestMemory, Create_Shared_GuestWritesReachTheMemfd) {
  GuestMemory::Backing backing;
  backing.shared = true;
  auto mem = GuestMemory::Create(layout::kMmioHoleStart + (8ull << 20), backing);
  ASSERT_TRUE(mem) << mem.error().message();
  ASSERT_GE(mem->memfd(), 0);
  const char text[] = "above the hole";
  ASSERT_TRUE(mem->Write(GuestAddr(layout::kHighRamStart + 4096), text, sizeof(text)));
  char back[sizeof(text)] = {};
  // The high region follows the low one in the file.
  ASSERT_EQ(::pread(mem->memfd(), back, sizeof(back), layout::kMmioHoleStart + 4096),
            static_cast<ssize_t>(sizeof(back)));
  EXPECT_STREQ(back, text);
  auto plain = GuestMemory::Create(1 << 20);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->memfd(), -1);
}

// prealloc=on: every page is resident before the guest runs.
TEST(GuestMemory, Create_Prealloc_EveryPageResident) {
  constexpr uint64_t kSize = 8ull << 20;
  GuestMemory::Backing backing;
  backing.prealloc = true;
  auto mem = GuestMemory::Create(kSize, backing);
  ASSERT_TRUE(mem) << mem.error().message();
  std::vector<unsigned char> resident(kSize / 4096);
  ASSERT_EQ(::mincore(mem->regions()[0].host, kSize, resident.data()), 0);
  for (size_t i = 0; i < resident.size(); ++i) ASSERT_TRUE(resident[i] & 1) << "page " << i;
  auto lazy = GuestMemory::Create(kSize);
  ASSERT_TRUE(lazy);
  ASSERT_EQ(::mincore(lazy->regions()[0].host, kSize, resident.data()), 0);
  EXPECT_FALSE(resident[resident.size() / 2] & 1);
}

// Huge pages are reserved when the RAM is made: a pool too small is an error now, naming the
// pages needed (1 TiB of 1 GiB pages is more than any pool here holds).
TEST(GuestMemory, Create_HugePagesPoolTooSmall_ErrorNow) {
  GuestMemory::Backing backing;
  backing.hugepage_size = 1ull << 30;
  for (bool shared : {false, true}) {
    backing.shared = shared;
    auto mem = GuestMemory::Create(1ull << 40, backing);
    ASSERT_FALSE(mem) << "shared=" << shared;
    EXPECT_NE(mem.error().message().find("from 1 GiB huge pages"), std::string::npos)
        << mem.error().message();
    EXPECT_NE(mem.error().message().find("the guest needs 1025 pages"), std::string::npos)
        << mem.error().message();
  }
  backing.hugepage_size = 2ull << 20;
  EXPECT_FALSE(GuestMemory::Create(3ull << 20, backing));  // not whole pages
  backing.hugepage_size = 4ull << 20;
  EXPECT_FALSE(GuestMemory::Create(8ull << 20, backing));  // no such page size
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
  auto mem =
      GuestMemory::FromRegions({{GuestAddr(0), 4096, a.data()}, {GuestAddr(4096), 4096, b.data()}});
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
  EXPECT_FALSE(GuestMemory::FromRegions(
      {{GuestAddr(0), 8192, a.data()}, {GuestAddr(4096), 4096, a.data()}}));
}

}  // namespace
}  // namespace kite
