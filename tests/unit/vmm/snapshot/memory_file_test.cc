// The memory file: sparse writing, layout JSON checks, MAP_PRIVATE mapping with its size
// check (F12), and re-saving memory that is itself a private mapping of a memory file.
#include "vmm/snapshot/memory_file.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "testing/temp_dir.h"

namespace kite::snapshot {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
constexpr uint64_t kPage = kMemoryPageSize;

// Two anonymous regions (below and above a hole) with a few non-zero pages.
class TestMemory {
 public:
  TestMemory() {
    memory_ = std::move(
        *GuestMemory::FromMappings({Map(0, 64 * kPage), Map(1ull << 32, 32 * kPage)}, ""));
    Fill(GuestAddr(0), 0x11);                // first page
    Fill(GuestAddr(7 * kPage + 100), 0x22);  // one byte in page 7
    for (uint64_t p = 20; p < 30; ++p) Fill(GuestAddr(p * kPage), static_cast<uint8_t>(p));
    Fill(GuestAddr((1ull << 32) + 31 * kPage + kPage - 1), 0x33);  // last byte of the RAM
  }
  const GuestMemory& memory() const { return memory_; }
  void Fill(GuestAddr addr, uint8_t value) { ASSERT_TRUE(memory_.WriteObj(addr, value)); }

 private:
  static MemoryRegion Map(uint64_t gpa, uint64_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return {GuestAddr(gpa), size, static_cast<uint8_t*>(p)};
  }
  GuestMemory memory_;
};

void ExpectSameContents(const GuestMemory& a, const GuestMemory& b) {
  ASSERT_EQ(a.regions().size(), b.regions().size());
  for (size_t i = 0; i < a.regions().size(); ++i) {
    const MemoryRegion& ra = a.regions()[i];
    const MemoryRegion& rb = b.regions()[i];
    ASSERT_EQ(ra.guest_base, rb.guest_base);
    ASSERT_EQ(ra.size, rb.size);
    EXPECT_EQ(std::memcmp(ra.host, rb.host, ra.size), 0) << "region " << i;
  }
}

MemoryFileLayout WriteTo(const std::string& path, const GuestMemory& memory,
                         MemoryWriteStats* stats = nullptr) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600));
  auto layout = WriteMemoryFile(fd.get(), memory.regions(), stats);
  EXPECT_TRUE(layout) << layout.error().message();
  return layout ? *layout : MemoryFileLayout{};
}

TEST(MemoryFileTest, IsZeroPage_FindsAnyNonZeroByte) {
  std::vector<uint8_t> page(kPage + 8, 0);
  uint8_t* p = page.data();
  EXPECT_TRUE(IsZeroPage(p));
  for (size_t i : {0ul, 63ul, 64ul, 2048ul, 4095ul}) {
    p[i] = 1;
    EXPECT_FALSE(IsZeroPage(p)) << i;
    p[i] = 0;
  }
}

TEST(MemoryFileTest, Write_IsSparseAndLayoutContiguous) {
  testing::TempDir dir;
  TestMemory mem;
  MemoryWriteStats stats;
  MemoryFileLayout layout = WriteTo(dir.File("memory"), mem.memory(), &stats);
  ASSERT_EQ(layout.regions.size(), 2u);
  EXPECT_EQ(layout.regions[0], (MemoryFileRegion{0, 64 * kPage, 0}));
  EXPECT_EQ(layout.regions[1], (MemoryFileRegion{1ull << 32, 32 * kPage, 64 * kPage}));
  EXPECT_EQ(layout.file_size, 96 * kPage);
  EXPECT_EQ(stats.data_bytes, 13 * kPage);  // pages 0, 7, 20..29 and the last one
  EXPECT_EQ(stats.zero_pages, 96u - 13u);
  EXPECT_EQ(stats.writes, 4u);  // the runs: {0}, {7}, {20..29}, {last}
  struct stat st;
  ASSERT_EQ(::stat(dir.File("memory").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 96 * kPage);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 40 * kPage) << "zero pages are holes";
}

TEST(MemoryFileTest, WriteThenMap_SameContents) {
  testing::TempDir dir;
  TestMemory mem;
  MemoryFileLayout layout = WriteTo(dir.File("memory"), mem.memory());
  auto mapped = MapMemoryFile(dir.File("memory"), layout);
  ASSERT_TRUE(mapped) << mapped.error().message();
  ExpectSameContents(mem.memory(), *mapped);
  EXPECT_EQ(mapped->backing_path(), dir.File("memory"));
}

TEST(MemoryFileTest, MappedMemory_WritesStayPrivate) {
  testing::TempDir dir;
  TestMemory mem;
  MemoryFileLayout layout = WriteTo(dir.File("memory"), mem.memory());
  std::string before = testing::ReadFile(dir.File("memory"));
  {
    auto mapped = MapMemoryFile(dir.File("memory"), layout);
    ASSERT_TRUE(mapped);
    ASSERT_TRUE(mapped->WriteObj(GuestAddr(5 * kPage), uint64_t{0xdeadbeef}));
  }
  EXPECT_EQ(testing::ReadFile(dir.File("memory")), before);
}

TEST(MemoryFileTest, ShortOrLongFile_RefusedBeforeMapping) {
  testing::TempDir dir;
  TestMemory mem;
  MemoryFileLayout layout = WriteTo(dir.File("memory"), mem.memory());
  const int64_t page = static_cast<int64_t>(kPage);
  for (int64_t delta : {int64_t{-1}, -page, int64_t{1}, page}) {
    ASSERT_EQ(::truncate(dir.File("memory").c_str(), static_cast<off_t>(layout.file_size) + delta),
              0);
    auto mapped = MapMemoryFile(dir.File("memory"), layout);
    ASSERT_FALSE(mapped) << delta;
    EXPECT_THAT(mapped.error().message(), HasSubstr("the snapshot state expects"));
  }
}

TEST(MemoryFileTest, MissingFile_NamesIt) {
  auto mapped = MapMemoryFile("/nonexistent/memory", {{{0, kPage, 0}}, kPage});
  ASSERT_FALSE(mapped);
  EXPECT_THAT(mapped.error().message(), HasSubstr("/nonexistent/memory"));
}

// CH PR #1890: after a MAP_PRIVATE restore most pages are file-backed and untouched; a
// second snapshot must still contain every one of them, as it reads now.
TEST(MemoryFileTest, ResaveFromPrivateMapping_WritesEveryPage) {
  testing::TempDir dir;
  TestMemory mem;
  MemoryFileLayout layout = WriteTo(dir.File("memory1"), mem.memory());
  auto restored = MapMemoryFile(dir.File("memory1"), layout);
  ASSERT_TRUE(restored);
  // The guest dirties one page and zeroes another that the file holds.
  ASSERT_TRUE(restored->WriteObj(GuestAddr(40 * kPage), uint32_t{0x12345678}));
  std::vector<uint8_t> zeros(kPage, 0);
  ASSERT_TRUE(restored->Write(GuestAddr(21 * kPage), zeros.data(), kPage));
  mem.Fill(GuestAddr(40 * kPage), 0x78);
  mem.Fill(GuestAddr(40 * kPage + 1), 0x56);
  mem.Fill(GuestAddr(40 * kPage + 2), 0x34);
  mem.Fill(GuestAddr(40 * kPage + 3), 0x12);
  for (uint64_t i = 0; i < kPage; ++i) mem.Fill(GuestAddr(21 * kPage + i), 0);

  MemoryWriteStats stats;
  MemoryFileLayout layout2 = WriteTo(dir.File("memory2"), *restored, &stats);
  EXPECT_EQ(stats.data_bytes, 13 * kPage);  // 13 - page 21 + page 40
  auto again = MapMemoryFile(dir.File("memory2"), layout2);
  ASSERT_TRUE(again);
  ExpectSameContents(mem.memory(), *again);
}

TEST(MemoryLayoutJsonTest, RoundTrip) {
  MemoryFileLayout layout{{{0, 16 * kPage, 0}, {1ull << 32, kPage, 16 * kPage}}, 17 * kPage};
  auto back = MemoryLayoutFromJson(MemoryLayoutToJson(layout));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, layout);
}

TEST(MemoryLayoutJsonTest, Malformed_RefusedNamingTheMember) {
  auto region = [](uint64_t gpa, uint64_t size, uint64_t offset) {
    return json{{"gpa", gpa}, {"size", size}, {"offset", offset}};
  };
  struct Case {
    json value;
    const char* message;
  } cases[] = {
      {json::array(), "memory: expected an object"},
      {{{"size", kPage}}, "memory.regions"},
      {{{"size", kPage}, {"regions", json::array()}}, "memory.regions"},
      {{{"size", -1}, {"regions", {region(0, kPage, 0)}}}, "memory.size"},
      {{{"size", kPage}, {"regions", {region(0, kPage, 0)}}, {"x", 1}}, "unknown member 'x'"},
      {{{"size", kPage}, {"regions", {region(0, kPage, kPage)}}}, "memory.regions[0].offset"},
      {{{"size", kPage}, {"regions", {region(1, kPage, 0)}}}, "multiples of 4096"},
      {{{"size", 0}, {"regions", {region(0, 0, 0)}}}, "memory.regions[0].size"},
      {{{"size", 2 * kPage}, {"regions", {region(0, kPage, 0)}}}, "memory.size"},
      {{{"size", 2 * kPage}, {"regions", {region(kPage, kPage, 0), region(0, kPage, kPage)}}},
       "memory.regions[1].gpa"},
      {{{"size", 2 * kPage}, {"regions", {region(~uint64_t{0} - kPage + 1, 2 * kPage, 0)}}},
       "wraps around"},
      {{{"size", kPage}, {"regions", {{{"gpa", "0"}, {"size", kPage}, {"offset", 0}}}}},
       "memory.regions[0].gpa"},
  };
  for (const Case& c : cases) {
    auto r = MemoryLayoutFromJson(c.value);
    ASSERT_FALSE(r) << c.value.dump();
    EXPECT_THAT(r.error().message(), HasSubstr(c.message)) << c.value.dump();
  }
}

}  // namespace
}  // namespace kite::snapshot
