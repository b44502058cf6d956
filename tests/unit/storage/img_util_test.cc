// kite-img pure helpers: hole detection for convert, difference ranges for rebase, qcow2 size
// arithmetic for measure (checked against qemu-img measure), and create option validation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "img_test_util.h"
#include "storage/img/convert_util.h"
#include "storage/img/create_spec.h"
#include "storage/img/measure.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::img {
namespace {

using testing::Shell;

TEST(NonZeroRanges, AllZero_NothingToWrite) {
  std::vector<uint8_t> buf(64 * 1024, 0);
  EXPECT_TRUE(NonZeroRanges(buf.data(), buf.size(), 4096).empty());
}

TEST(NonZeroRanges, LongZeroRun_LeftAsHole) {
  std::vector<uint8_t> buf(64 * 1024, 0);
  buf[0] = 1;
  buf[20000] = 2;
  auto r = NonZeroRanges(buf.data(), buf.size(), 4096);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], (ByteRange{0, 512}));
  EXPECT_EQ(r[1], (ByteRange{19968, 512}));
}

TEST(NonZeroRanges, ShortZeroRun_WrittenWithNeighbours) {
  std::vector<uint8_t> buf(8192, 0);
  buf[0] = 1;
  buf[2048] = 1;  // 1.5 KiB of zeros between: shorter than 4 KiB
  auto r = NonZeroRanges(buf.data(), buf.size(), 4096);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0], (ByteRange{0, 2560}));
}

TEST(NonZeroRanges, PartialLastSector_Kept) {
  std::vector<uint8_t> buf(700, 0);
  buf[699] = 9;
  auto r = NonZeroRanges(buf.data(), buf.size(), 512);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0], (ByteRange{512, 188}));
}

TEST(DifferingRanges, MergesNeighbours) {
  std::vector<uint8_t> a(4 * 1024, 0), b(4 * 1024, 0);
  a[10] = 1;
  a[1500] = 1;
  a[3500] = 1;
  auto r = DifferingRanges(a.data(), b.data(), a.size(), 1024);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], (ByteRange{0, 2048}));
  EXPECT_EQ(r[1], (ByteRange{3072, 1024}));
}

TEST(DifferingRanges, Equal_Empty) {
  std::vector<uint8_t> a(3000, 7);
  EXPECT_TRUE(DifferingRanges(a.data(), a.data(), a.size(), 1024).empty());
}

uint64_t QemuFullyAllocated(uint64_t size, uint64_t cluster, int refcount_bits) {
  auto r =
      Shell("qemu-img measure --output=json -O qcow2 -o cluster_size=" + std::to_string(cluster) +
            ",refcount_bits=" + std::to_string(refcount_bits) + " --size " + std::to_string(size));
  EXPECT_EQ(r.code, 0);
  return nlohmann::json::parse(r.out)["fully-allocated"].get<uint64_t>();
}

TEST(Measure, FullyAllocated_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  struct Case {
    uint64_t size, cluster;
    int bits;
  } cases[] = {{1ull << 30, 65536, 16},
               {10ull << 20, 4096, 16},
               {(1ull << 40) + 512, 65536, 1},
               {12345 * 512, 2 << 20, 64},
               {1, 512, 16}};
  for (const Case& c : cases) {
    EXPECT_EQ(Qcow2FullyAllocatedSize(c.size, c.cluster, c.bits),
              QemuFullyAllocated(c.size, c.cluster, c.bits))
        << c.size << " " << c.cluster << " " << c.bits;
  }
}

TEST(CreateSpec, BackingWithoutFormat_Refused) {
  EXPECT_FALSE(BuildCreateSpec({"qcow2", {}, "base.img", std::nullopt, 1 << 20}));
}

TEST(CreateSpec, BackingOnRaw_Refused) {
  EXPECT_FALSE(BuildCreateSpec({"raw", {}, "base.img", "raw", 1 << 20}));
}

TEST(CreateSpec, UnknownOption_Refused) {
  EXPECT_FALSE(BuildCreateSpec({"qcow2", {"frobnicate=1"}, "", std::nullopt, 1 << 20}));
  EXPECT_FALSE(BuildCreateSpec({"raw", {"cluster_size=4k"}, "", std::nullopt, 1 << 20}));
}

TEST(CreateSpec, BadClusterSize_Refused) {
  EXPECT_FALSE(BuildCreateSpec({"qcow2", {"cluster_size=3000"}, "", std::nullopt, 1 << 20}));
  EXPECT_FALSE(BuildCreateSpec({"qcow2", {"cluster_size=4M"}, "", std::nullopt, 1 << 20}));
}

TEST(CreateSpec, V2WithLazyRefcounts_Refused) {
  EXPECT_FALSE(
      BuildCreateSpec({"qcow2", {"compat=0.10,lazy_refcounts=on"}, "", std::nullopt, 1 << 20}));
}

TEST(CreateSpec, NoSize_Refused) {
  EXPECT_FALSE(BuildCreateSpec({"qcow2", {}, "", std::nullopt, std::nullopt}));
}

TEST(CreateSpec, SizeFromOptionList) {
  auto spec = BuildCreateSpec({"raw", {"size=2M"}, "", std::nullopt, std::nullopt});
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->size, 2u << 20);
}

TEST(FormattingLine, MatchesQemuImg) {
  KITE_REQUIRE_TOOL("qemu-img");
  kite::testing::TempDir dir;
  struct Case {
    std::string format, options;
  } cases[] = {{"qcow2", ""},
               {"qcow2", "cluster_size=4k,refcount_bits=8,lazy_refcounts=on"},
               {"qcow2", "compat=0.10,preallocation=metadata"},
               {"raw", ""},
               {"raw", "preallocation=falloc"}};
  for (const Case& c : cases) {
    std::string file = dir.File("f." + c.format);
    std::vector<std::string> opts;
    if (!c.options.empty()) opts.push_back(c.options);
    auto spec = BuildCreateSpec({c.format, opts, "", std::nullopt, 1 << 20});
    ASSERT_TRUE(spec) << spec.error().message();
    auto qemu = Shell("qemu-img create -f " + c.format +
                      (c.options.empty() ? "" : " -o " + c.options) + " " + file + " 1M");
    EXPECT_EQ(FormattingLine(file, *spec) + "\n", qemu.out) << c.options;
  }
}

}  // namespace
}  // namespace kite::img
