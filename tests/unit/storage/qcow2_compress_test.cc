// Compressed-cluster codecs: round trips, and streams that end early or are garbage (I30).
#include "storage/qcow2/qcow2_compress.h"

#include <gtest/gtest.h>

#include <random>

namespace kite::storage::qcow2 {
namespace {

std::vector<uint8_t> Compressible() {
  std::vector<uint8_t> d(65536);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>((i / 100) % 7);
  return d;
}

class Codec : public ::testing::TestWithParam<CompressionType> {};

TEST_P(Codec, RoundTrip_ExactCluster) {
  auto in = Compressible();
  auto packed = CompressCluster(GetParam(), in);
  ASSERT_TRUE(packed);
  ASSERT_FALSE(packed->empty());
  EXPECT_LT(packed->size(), in.size());
  std::vector<uint8_t> out(in.size());
  ASSERT_TRUE(DecompressCluster(GetParam(), *packed, out));
  EXPECT_EQ(out, in);
}

TEST_P(Codec, Incompressible_ReturnsEmpty) {
  std::mt19937 rng(3);
  std::vector<uint8_t> noise(4096);
  for (uint8_t& b : noise) b = static_cast<uint8_t>(rng());
  auto packed = CompressCluster(GetParam(), noise);
  ASSERT_TRUE(packed);
  EXPECT_TRUE(packed->empty());
}

TEST_P(Codec, I30_TruncatedStream_Refused) {
  auto in = Compressible();
  auto packed = CompressCluster(GetParam(), in);
  ASSERT_TRUE(packed);
  packed->resize(packed->size() / 2);
  std::vector<uint8_t> out(in.size());
  EXPECT_FALSE(DecompressCluster(GetParam(), *packed, out));
}

TEST_P(Codec, I30_Garbage_Refused) {
  std::vector<uint8_t> garbage(300, 0xff), out(65536);
  EXPECT_FALSE(DecompressCluster(GetParam(), garbage, out));
}

INSTANTIATE_TEST_SUITE_P(Types, Codec,
                         ::testing::Values(CompressionType::kZlib, CompressionType::kZstd));

}  // namespace
}  // namespace kite::storage::qcow2
