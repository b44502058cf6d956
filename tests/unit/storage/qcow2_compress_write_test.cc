// Compressed-cluster writes (WriteCompressedCluster): zlib and zstd images of several cluster
// sizes, packed streams sharing host clusters, mixed with normal writes, overwrites and
// discards; qemu-img check must stay clean and qemu-img must read what kite wrote.
#include <gtest/gtest.h>

#include <random>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

// Compressible, but different per seed (so stream lengths vary and packing crosses clusters).
std::vector<uint8_t> Compressible(size_t len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> d(len);
  size_t run = 3 + seed % 17;
  for (size_t i = 0; i < len; ++i) d[i] = (i % 61 < 5) ? rng() : (i / run) % (2 + seed % 5);
  return d;
}

std::vector<uint8_t> Noise(size_t len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> d(len);
  for (uint8_t& b : d) b = static_cast<uint8_t>(rng());
  return d;
}

void ExpectQemuAgrees(const std::string& path, const std::vector<uint8_t>& expected) {
  auto check = testing::Run("qemu-img check '" + path + "'");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  std::string raw = path + ".expected.raw";
  std::string bytes(expected.begin(), expected.end());
  kite::testing::WriteFile(raw, bytes);
  auto cmp = testing::Run("qemu-img compare -f raw -F qcow2 '" + raw + "' '" + path + "'");
  EXPECT_EQ(cmp.exit_code, 0) << cmp.output;
}

struct Variant {
  CompressionType type;
  uint32_t cluster_size;
};

class CompressedWrite : public ::testing::TestWithParam<Variant> {
 protected:
  std::string Create(uint64_t size) {
    std::string p = dir_.File("c.qcow2");
    Qcow2CreateOptions o;
    o.size = size;
    o.cluster_size = GetParam().cluster_size;
    o.compression_type = GetParam().type;
    EXPECT_TRUE(CreateQcow2(p, o));
    return p;
  }
  TempDir dir_;
};

TEST_P(CompressedWrite, PackedClusters_QemuCheckCleanAndReadsEqual) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  const uint64_t cs = GetParam().cluster_size, clusters = 40;
  std::string p = Create(clusters * cs);
  std::vector<uint8_t> expected(clusters * cs, 0);
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    for (uint64_t c = 0; c < clusters; ++c) {
      if (c % 9 == 4) continue;                                     // holes
      auto data = c % 7 == 3 ? Noise(cs, c) : Compressible(cs, c);  // noise: stored as is
      ASSERT_TRUE(WriteCompressedCluster(*img, c * cs, data)) << c;
      std::copy(data.begin(), data.end(), expected.begin() + c * cs);
    }
    EXPECT_EQ(testing::ReadAll(*img), expected);
    ASSERT_TRUE(img->Flush());
  }
  auto report = CheckQcow2(p, RepairMode::kNone);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->ExitCode(), 0);
  EXPECT_GT(report->compressed_clusters, clusters / 2);
  ExpectQemuAgrees(p, expected);
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2, true);
  ASSERT_TRUE(img);
  EXPECT_EQ(testing::ReadAll(*img), expected);  // read back after reopening
}

TEST_P(CompressedWrite, MixedWithNormalWritesOverwritesAndDiscards_RefcountsExact) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  const uint64_t cs = GetParam().cluster_size, clusters = 32;
  std::string p = Create(clusters * cs);
  std::vector<uint8_t> expected(clusters * cs, 0);
  auto put = [&](uint64_t at, const std::vector<uint8_t>& d) {
    std::copy(d.begin(), d.end(), expected.begin() + at);
  };
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    for (uint64_t c = 0; c < clusters; ++c) {
      auto data = Compressible(cs, 100 + c);
      if (c % 3 == 0) {
        ASSERT_TRUE(img->Write(c * cs, data.data(), data.size()));
      } else {
        ASSERT_TRUE(WriteCompressedCluster(*img, c * cs, data));
      }
      put(c * cs, data);
    }
    // A normal write over a compressed cluster (partial: the rest is decompressed first).
    auto small = Noise(cs / 4, 7);
    ASSERT_TRUE(img->Write(5 * cs + cs / 2, small.data(), small.size()));
    put(5 * cs + cs / 2, small);
    ASSERT_TRUE(img->Discard(7 * cs, 2 * cs));  // frees two compressed clusters
    std::fill(expected.begin() + 7 * cs, expected.begin() + 9 * cs, 0);
    // A discarded cluster may be written compressed again; the packing continues elsewhere.
    auto again = Compressible(cs, 999);
    ASSERT_TRUE(WriteCompressedCluster(*img, 8 * cs, again));
    put(8 * cs, again);
    EXPECT_EQ(testing::ReadAll(*img), expected);
  }
  ExpectQemuAgrees(p, expected);
}

TEST_P(CompressedWrite, AllocatedCluster_Refused) {
  const uint64_t cs = GetParam().cluster_size;
  std::string p = Create(4 * cs);
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  ASSERT_TRUE(img);
  auto data = Compressible(cs, 1);
  ASSERT_TRUE(WriteCompressedCluster(*img, 0, data));
  EXPECT_FALSE(WriteCompressedCluster(*img, 0, data));  // compressed: allocated
  ASSERT_TRUE(img->Write(cs, data.data(), data.size()));
  EXPECT_FALSE(WriteCompressedCluster(*img, cs, data));  // normal: allocated
  ASSERT_TRUE(img->WriteZeroes(2 * cs, cs, false));      // zero flag, no host cluster
  EXPECT_TRUE(WriteCompressedCluster(*img, 2 * cs, data));
  EXPECT_FALSE(WriteCompressedCluster(*img, 3 * cs + 512, {data.data(), cs - 512}));
  EXPECT_FALSE(WriteCompressedCluster(*img, 3 * cs, {data.data(), cs / 2}));  // not the end
}

INSTANTIATE_TEST_SUITE_P(Types, CompressedWrite,
                         ::testing::Values(Variant{CompressionType::kZlib, 65536},
                                           Variant{CompressionType::kZstd, 65536},
                                           Variant{CompressionType::kZlib, 4096},
                                           Variant{CompressionType::kZstd, 512}));

TEST(CompressedWriteEdge, ShortLastCluster_PaddedAndReadable) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("s.qcow2");
  Qcow2CreateOptions o;
  o.size = 65536 + 4096;  // the last cluster covers 4 KiB of disk
  ASSERT_TRUE(CreateQcow2(p, o));
  std::vector<uint8_t> expected(o.size, 0);
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    auto tail = Compressible(4096, 5);
    ASSERT_TRUE(WriteCompressedCluster(*img, 65536, tail));
    std::copy(tail.begin(), tail.end(), expected.begin() + 65536);
    EXPECT_EQ(testing::ReadAll(*img), expected);
  }
  ExpectQemuAgrees(p, expected);
}

TEST(CompressedWriteEdge, PackingClusterFreed_NotReusedForStreams) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("f.qcow2");
  Qcow2CreateOptions o;
  o.size = 4 * 65536;
  ASSERT_TRUE(CreateQcow2(p, o));
  std::vector<uint8_t> expected(o.size, 0);
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    ASSERT_TRUE(WriteCompressedCluster(*img, 0, Compressible(65536, 1)));
    ASSERT_TRUE(img->Discard(0, 65536));  // the packing cluster's refcount drops to 0
    auto normal = Noise(65536, 2);        // reuses that host cluster
    ASSERT_TRUE(img->Write(65536, normal.data(), normal.size()));
    std::copy(normal.begin(), normal.end(), expected.begin() + 65536);
    auto packed = Compressible(65536, 3);
    ASSERT_TRUE(WriteCompressedCluster(*img, 2 * 65536, packed));
    std::copy(packed.begin(), packed.end(), expected.begin() + 2 * 65536);
    EXPECT_EQ(testing::ReadAll(*img), expected);
  }
  ExpectQemuAgrees(p, expected);
}

TEST(CompressedWriteEdge, QemuPackedImage_KiteAppendsMore) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string src = dir.File("src.raw"), p = dir.File("q.qcow2");
  auto first = Compressible(1 << 20, 3);
  std::vector<uint8_t> expected(first);
  expected.resize(2 << 20, 0);
  kite::testing::WriteFile(src, std::string(expected.begin(), expected.end()));
  auto r = testing::Run("qemu-img convert -c -f raw -O qcow2 '" + src + "' '" + p + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    for (uint64_t at = 1 << 20; at < (2u << 20); at += 65536) {
      auto data = Compressible(65536, static_cast<uint32_t>(at));
      ASSERT_TRUE(WriteCompressedCluster(*img, at, data));
      std::copy(data.begin(), data.end(), expected.begin() + at);
    }
  }
  ExpectQemuAgrees(p, expected);
}

TEST(CompressedWriteEdge, RawImage_NotSupported) {
  TempDir dir;
  std::string p = dir.File("r.raw");
  kite::testing::WriteFile(p, std::string(65536, '\0'));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw);
  ASSERT_TRUE(img);
  std::vector<uint8_t> data(65536, 1);
  auto done = WriteCompressedCluster(*img, 0, data);
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().message(), "Compression not supported for this file format");
}

}  // namespace
}  // namespace kite::storage
