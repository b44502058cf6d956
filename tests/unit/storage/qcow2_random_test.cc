// Randomized: writes, discards, write-zeroes and flushes into a kite qcow2 image (with and
// without a backing file, several cluster sizes) and into a plain buffer; both must read the
// same, and qemu-img must find the image clean and read the same bytes.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

struct RandomCase {
  uint32_t cluster;
  bool backing;
  std::string compat;
};

class RandomOps : public ::testing::TestWithParam<RandomCase> {};

TEST_P(RandomOps, MatchesBufferAndPassesQemuCheck) {
  TempDir dir;
  const uint64_t size = 4 << 20;
  std::vector<uint8_t> model(size, 0);
  std::string p = dir.File("r.qcow2");
  Qcow2CreateOptions o;
  o.size = size;
  o.cluster_size = GetParam().cluster;
  o.compat = GetParam().compat;
  if (GetParam().backing) {
    std::string base = dir.File("base.raw");
    ASSERT_TRUE(CreateRaw(base, size - 300 * 1024, Preallocation::kOff));  // shorter (I18)
    auto b = testing::OpenForTest(base, ImageFormat::kRaw);
    auto d = testing::Pattern(0, b->size(), 99);
    ASSERT_TRUE(b->Write(0, d.data(), d.size()));
    std::copy(d.begin(), d.end(), model.begin());
    o.backing_file = "base.raw";
    o.backing_format = "raw";
  }
  ASSERT_TRUE(CreateQcow2(p, o));
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  ASSERT_TRUE(img);
  std::mt19937_64 rng(GetParam().cluster * 7 + GetParam().backing);
  for (int i = 0; i < 300; ++i) {
    uint64_t off = rng() % size;
    uint64_t len = std::min<uint64_t>(size - off, 1 + rng() % (3 * GetParam().cluster));
    if (rng() % 2) off &= ~511ull, len = std::max<uint64_t>(512, len & ~511ull);
    len = std::min(len, size - off);
    switch (rng() % 6) {
      case 0:
      case 1:
      case 2: {
        auto d = testing::Pattern(off, len, static_cast<uint32_t>(i));
        ASSERT_TRUE(img->Write(off, d.data(), d.size()));
        std::copy(d.begin(), d.end(), model.begin() + off);
        break;
      }
      case 3:
        ASSERT_TRUE(img->Discard(off, len));
        std::fill(model.begin() + off, model.begin() + off + len, 0);
        break;
      case 4:
        ASSERT_TRUE(img->WriteZeroes(off, len, rng() % 2));
        std::fill(model.begin() + off, model.begin() + off + len, 0);
        break;
      case 5:
        ASSERT_TRUE(img->Flush());
        break;
    }
  }
  ASSERT_TRUE(testing::ReadAll(*img) == model);
  img.reset();
  KITE_REQUIRE_TOOL("qemu-img");
  auto r = testing::Run("qemu-img check '" + p + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == model);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RandomOps,
    ::testing::Values(RandomCase{65536, false, "1.1"}, RandomCase{65536, true, "1.1"},
                      RandomCase{512, true, "1.1"}, RandomCase{4096, false, "1.1"},
                      RandomCase{4096, true, "0.10"}, RandomCase{2 << 20, true, "1.1"}));

// Several threads writing disjoint regions at once (in-place and allocating writes mixed).
TEST(Qcow2Threads, ConcurrentDisjointWrites_AllLand) {
  TempDir dir;
  std::string p = dir.File("t.qcow2");
  Qcow2CreateOptions o;
  o.size = 16 << 20;
  o.cluster_size = 4096;
  ASSERT_TRUE(CreateQcow2(p, o));
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 2; ++round) {
        for (uint64_t off = t * (4ull << 20); off + 3000 <= (t + 1) * (4ull << 20); off += 6000) {
          auto d = testing::Pattern(off, 3000, round);
          auto w = img->Write(off, d.data(), d.size());
          EXPECT_TRUE(w) << w.error().message();
          std::vector<uint8_t> back(3000);
          auto r = img->Read(off, back.data(), back.size());
          EXPECT_TRUE(r) << r.error().message();
          EXPECT_TRUE(back == d);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  img.reset();
  KITE_REQUIRE_TOOL("qemu-img");
  auto r = testing::Run("qemu-img check '" + p + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Threads mixing writes, discards and zeroes on their own regions (frees take the I/O lock
// exclusively while other threads read and write in place); every region ends as its model.
TEST(Qcow2Threads, ConcurrentWritesAndDiscards_RegionsMatchModels) {
  TempDir dir;
  std::string p = dir.File("t.qcow2");
  Qcow2CreateOptions o;
  o.size = 8 << 20;
  o.cluster_size = 4096;
  ASSERT_TRUE(CreateQcow2(p, o));
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  constexpr uint64_t kRegion = 2 << 20;
  std::vector<std::vector<uint8_t>> models(4, std::vector<uint8_t>(kRegion, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      uint64_t base = t * kRegion;
      for (int i = 0; i < 150; ++i) {
        uint64_t off = (rng() % (kRegion / 512)) * 512;
        uint64_t len = std::min<uint64_t>(kRegion - off, 512 * (1 + rng() % 40));
        if (rng() % 3) {
          auto d = testing::Pattern(base + off, len, i);
          EXPECT_TRUE(img->Write(base + off, d.data(), d.size()));
          std::copy(d.begin(), d.end(), models[t].begin() + off);
        } else {
          EXPECT_TRUE(rng() % 2 ? img->Discard(base + off, len)
                                : img->WriteZeroes(base + off, len, true));
          std::fill(models[t].begin() + off, models[t].begin() + off + len, 0);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  auto all = testing::ReadAll(*img);
  for (int t = 0; t < 4; ++t) {
    EXPECT_TRUE(std::equal(models[t].begin(), models[t].end(), all.begin() + t * kRegion)) << t;
  }
  img.reset();
  KITE_REQUIRE_TOOL("qemu-img");
  auto r = testing::Run("qemu-img check '" + p + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace kite::storage
