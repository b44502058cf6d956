// GuestMemory::Discard (guest_memory_discard.cc): the host memory behind guest RAM really goes
// back to the host — mincore(2) shows the pages gone, the memfd's blocks shrink — and nothing
// outside the whole pages asked for is touched.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "testing/huge_page_pool.h"
#include "vmm/guest_memory.h"

namespace kite {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kSize = 16ull << 20;

// Resident pages of [host, host + len), per mincore(2).
size_t Resident(const uint8_t* host, uint64_t len) {
  std::vector<unsigned char> vec(len / kPage);
  EXPECT_EQ(::mincore(const_cast<uint8_t*>(host), len, vec.data()), 0) << strerror(errno);
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

void Fill(const GuestMemory& mem, uint8_t value) {
  std::span<uint8_t> all = mem.Slice(GuestAddr(0), kSize);
  std::memset(all.data(), value, all.size());
}

TEST(GuestMemoryDiscard, Private_PagesLeaveTheProcessAndReadZero) {
  auto mem = GuestMemory::Create(kSize);
  ASSERT_TRUE(mem) << mem.error().message();
  Fill(*mem, 0xab);
  uint8_t* base = mem->regions()[0].host;
  ASSERT_EQ(Resident(base, kSize), kSize / kPage);
  Result<uint64_t> freed = mem->Discard(mem->Slice(GuestAddr(1 << 20), 4 << 20));
  ASSERT_TRUE(freed) << freed.error().message();
  EXPECT_EQ(*freed, 4u << 20);
  EXPECT_EQ(Resident(base + (1 << 20), 4 << 20), 0u);
  EXPECT_EQ(Resident(base, 1 << 20), (1u << 20) / kPage);  // the neighbours stay
  EXPECT_EQ(Resident(base + (5 << 20), kSize - (5 << 20)), (kSize - (5 << 20)) / kPage);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(1 << 20)).value(), 0);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr((1 << 20) - 1)).value(), 0xab);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(5 << 20)).value(), 0xab);
}

TEST(GuestMemoryDiscard, PartialPages_OnlyWholePagesInside) {
  auto mem = GuestMemory::Create(kSize);
  ASSERT_TRUE(mem) << mem.error().message();
  Fill(*mem, 0x5a);
  // [4096 + 100, 4096 + 100 + 8192) holds one whole page: [8192, 12288).
  Result<uint64_t> freed = mem->Discard(mem->Slice(GuestAddr(kPage + 100), 2 * kPage));
  ASSERT_TRUE(freed);
  EXPECT_EQ(*freed, kPage);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(kPage + 100)).value(), 0x5a);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(2 * kPage)).value(), 0);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(3 * kPage)).value(), 0x5a);
  // Less than a page: nothing.
  EXPECT_EQ(mem->Discard(mem->Slice(GuestAddr(5 * kPage + 1), kPage)).value(), 0u);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(5 * kPage + 1)).value(), 0x5a);
}

// shared=on: the pages leave the memfd itself (its blocks), and every mapping sees zeros.
TEST(GuestMemoryDiscard, Shared_PunchesTheMemfd) {
  GuestMemory::Backing backing;
  backing.shared = true;
  auto mem = GuestMemory::Create(kSize, backing);
  ASSERT_TRUE(mem) << mem.error().message();
  Fill(*mem, 0xcd);
  struct stat before {};
  ASSERT_EQ(::fstat(mem->memfd(), &before), 0);
  Result<uint64_t> freed = mem->Discard(mem->Slice(GuestAddr(2 << 20), 8 << 20));
  ASSERT_TRUE(freed) << freed.error().message();
  EXPECT_EQ(*freed, 8u << 20);
  struct stat after {};
  ASSERT_EQ(::fstat(mem->memfd(), &after), 0);
  EXPECT_EQ((before.st_blocks - after.st_blocks) * 512, 8 << 20);
  uint8_t byte = 0xff;
  ASSERT_EQ(::pread(mem->memfd(), &byte, 1, 3 << 20), 1);  // the file, not our mapping
  EXPECT_EQ(byte, 0);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(3 << 20)).value(), 0);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(1 << 20)).value(), 0xcd);
}

TEST(GuestMemoryDiscard, ForeignMemory_ReleasesNothing) {
  std::vector<uint8_t> ram(64 * kPage, 0x11);
  auto mem = GuestMemory::FromRegions({{GuestAddr(0), ram.size(), ram.data()}});
  ASSERT_TRUE(mem);
  EXPECT_EQ(mem->Discard(mem->Slice(GuestAddr(0), ram.size())).value(), 0u);
  EXPECT_EQ(ram[100], 0x11);
}

TEST(GuestMemoryDiscard, RangeOutsideRam_Refused) {
  auto mem = GuestMemory::Create(kSize);
  ASSERT_TRUE(mem);
  std::vector<uint8_t> other(2 * kPage);
  EXPECT_FALSE(mem->Discard(std::span<uint8_t>(other)));
  // Starting inside RAM but running past its end.
  std::span<uint8_t> last = mem->Slice(GuestAddr(kSize - kPage), kPage);
  EXPECT_FALSE(mem->Discard(std::span<uint8_t>(last.data(), 2 * kPage)));
}

// 2 MiB huge pages (4 pages added to the host's pool: root needed): only whole huge pages go.
TEST(GuestMemoryDiscard, HugePages_OnlyWholeHugePages) {
  GuestMemory::Backing backing;
  backing.hugepage_size = 2ull << 20;
  testing::HugePagePool pool(4);
  KITE_REQUIRE_HUGE_PAGES(pool);
  auto mem = GuestMemory::Create(8ull << 20, backing);
  ASSERT_TRUE(mem) << mem.error().message();
  EXPECT_EQ(mem->page_size(), 2u << 20);
  std::span<uint8_t> all = mem->Slice(GuestAddr(0), 8 << 20);
  std::memset(all.data(), 0x77, all.size());
  EXPECT_EQ(mem->Discard(mem->Slice(GuestAddr(0), kPage)).value(), 0u);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(0)).value(), 0x77);
  Result<uint64_t> freed = mem->Discard(mem->Slice(GuestAddr(2 << 20), 2 << 20));
  ASSERT_TRUE(freed) << freed.error().message();
  EXPECT_EQ(*freed, 2u << 20);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(3 << 20)).value(), 0);
  EXPECT_EQ(mem->ReadObj<uint8_t>(GuestAddr(4 << 20)).value(), 0x77);
}

}  // namespace
}  // namespace kite
