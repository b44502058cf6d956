// QED (read-only): images qemu-img writes read byte-identical to what qemu-img reads (data,
// holes, zero clusters, raw and qcow2 backing files, small clusters and tables); a catalogue of
// malformed headers and tables made by patching a hand-built image (BAD_INPUTS I cases): each
// is refused at open, or fails the read it touches, with a message naming the file and the
// field; writes and read-write opens are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "storage/qed/qed_header.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::ReadFile;
using kite::testing::TempDir;
using kite::testing::WriteFile;
using testing::Run;

template <typename T>
void Put(std::string& s, size_t at, T v) {
  if (s.size() < at + sizeof(T)) s.resize(at + sizeof(T));
  std::memcpy(s.data() + at, &v, sizeof(T));
}

// A hand-built QED: 4 KiB clusters, one-cluster tables, a 1 MiB disk. Header cluster 0, L1 at
// 4096, L2 at 8192, one data cluster at 12288 (guest cluster 0, bytes 'A'), guest cluster 1 a
// zero cluster, the rest unallocated.
constexpr uint64_t kL1 = 4096, kL2 = 8192, kData = 12288;
std::string HandBuiltQed() {
  std::string s(16384, '\0');
  Put<uint32_t>(s, 0, qed::kMagic);
  Put<uint32_t>(s, 4, 4096);  // cluster_size
  Put<uint32_t>(s, 8, 1);     // table_size
  Put<uint32_t>(s, 12, 1);    // header_size
  Put<uint64_t>(s, 40, kL1);
  Put<uint64_t>(s, 48, 1 << 20);  // image_size
  Put<uint64_t>(s, kL1, kL2);
  Put<uint64_t>(s, kL2, kData);
  Put<uint64_t>(s, kL2 + 8, qed::kZeroCluster);
  std::memset(s.data() + kData, 'A', 4096);
  return s;
}

Result<std::unique_ptr<DiskImage>> OpenQed(const std::string& path, bool read_only = true) {
  OpenOptions o;
  o.read_only = read_only;
  return OpenImage(path, ImageFormat::kQed, o);
}

// Opening fails with a message that names the file and contains `field`.
void ExpectRefused(const std::string& path, const std::string& field) {
  auto r = OpenQed(path);
  ASSERT_FALSE(r) << path << " opened";
  EXPECT_NE(r.error().message().find(path), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(field), std::string::npos) << r.error().message();
}

class QedBadInput : public ::testing::Test {
 protected:
  void Write(const std::string& bytes) { WriteFile(path_, bytes); }
  // The hand-built image with a backing file name of `size` bytes at `offset` (`name` copied
  // there when given).
  void WriteWithBacking(uint64_t features, uint32_t offset, uint32_t size,
                        const std::string& name = "") {
    std::string s = HandBuiltQed();
    Put<uint64_t>(s, 16, features);
    Put<uint32_t>(s, 56, offset);
    Put<uint32_t>(s, 60, size);
    std::memcpy(s.data() + offset, name.data(), std::min<size_t>(name.size(), s.size() - offset));
    Write(s);
  }
  template <typename T>
  void Patch(size_t at, T v) {
    std::string s = HandBuiltQed();
    Put<T>(s, at, v);
    Write(s);
  }
  TempDir dir_;
  std::string path_ = dir_.File("bad.qed");
};

TEST(Qed, HandBuilt_ReadsDataZeroClusterAndHoles) {
  TempDir dir;
  std::string path = dir.File("h.qed");
  WriteFile(path, HandBuiltQed());
  auto image = OpenQed(path);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ((*image)->size(), 1u << 20);
  EXPECT_EQ((*image)->format(), ImageFormat::kQed);
  std::vector<uint8_t> all = testing::ReadAll(**image);
  std::vector<uint8_t> want(1 << 20, 0);
  std::memset(want.data(), 'A', 4096);
  EXPECT_EQ(all, want);
  auto e = (*image)->BlockStatus(0, 1 << 20);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->data && e->allocated);
  EXPECT_EQ(e->length, 4096u);
  EXPECT_EQ(e->host_offset, kData);
  e = (*image)->BlockStatus(4096, 1 << 20);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->zero && e->allocated && !e->data);
  e = (*image)->BlockStatus(8192, 1 << 20);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->zero && !e->allocated);
  EXPECT_EQ(e->length, (1u << 20) - 8192);
}

TEST(Qed, Writes_Refused_NothingWritten) {
  TempDir dir;
  std::string path = dir.File("h.qed");
  WriteFile(path, HandBuiltQed());
  auto image = OpenQed(path);
  ASSERT_TRUE(image);
  char b[512] = {1};
  EXPECT_FALSE((*image)->Write(0, b, sizeof(b)));
  EXPECT_FALSE((*image)->WriteZeroes(0, 4096, true));
  EXPECT_FALSE((*image)->Discard(0, 4096));
  EXPECT_EQ(ReadFile(path), HandBuiltQed());
}

TEST(Qed, ReadWriteOpen_RefusedNamingReadOnly) {
  TempDir dir;
  std::string path = dir.File("h.qed");
  WriteFile(path, HandBuiltQed());
  auto r = OpenQed(path, /*read_only=*/false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("read-only"), std::string::npos) << r.error().message();
}

TEST(Qed, ProbeImageFormat_FindsQed) {
  TempDir dir;
  std::string path = dir.File("h.qed");
  WriteFile(path, HandBuiltQed());
  auto f = ProbeImageFormat(path);
  ASSERT_TRUE(f);
  EXPECT_EQ(*f, ImageFormat::kQed);
  EXPECT_STREQ(ImageFormatName(ImageFormat::kQed), "qed");
  EXPECT_EQ(*ParseImageFormat("qed"), ImageFormat::kQed);
}

// QED_F_NEED_CHECK: opened read-only as qemu-img does (nothing written, tables checked per use).
TEST(Qed, I8_NeedCheck_OpensReadOnly) {
  TempDir dir;
  std::string path = dir.File("h.qed"), bytes = HandBuiltQed();
  Put<uint64_t>(bytes, 16, qed::kFeatureNeedCheck);
  WriteFile(path, bytes);
  auto image = OpenQed(path);
  ASSERT_TRUE(image) << image.error().message();
  char b[4096];
  ASSERT_TRUE((*image)->Read(0, b, sizeof(b)));
  EXPECT_EQ(b[100], 'A');
  EXPECT_EQ(ReadFile(path), bytes);
}

TEST_F(QedBadInput, I2_Truncated_ShorterThanHeader) {
  Write(HandBuiltQed().substr(0, 40));
  ExpectRefused(path_, "64-byte header");
}
TEST_F(QedBadInput, I2_Magic) {
  Patch<uint32_t>(0, 0x00444552);
  ExpectRefused(path_, "magic");
}
TEST_F(QedBadInput, I5_UnknownFeatureBit) {
  Patch<uint64_t>(16, 1u << 3);
  ExpectRefused(path_, "unknown features 0x8");
}
TEST_F(QedBadInput, I5_UnknownFeatureBit63) {
  Patch<uint64_t>(16, 1ull << 63);
  ExpectRefused(path_, "unknown features");
}
TEST_F(QedBadInput, ClusterSizeNotPowerOfTwo) {
  Patch<uint32_t>(4, 12288);
  ExpectRefused(path_, "cluster_size 12288");
}
TEST_F(QedBadInput, ClusterSizeTooSmall) {
  Patch<uint32_t>(4, 2048);
  ExpectRefused(path_, "cluster_size 2048");
}
TEST_F(QedBadInput, ClusterSizeTooLarge) {
  Patch<uint32_t>(4, 128u << 20);
  ExpectRefused(path_, "cluster_size");
}
TEST_F(QedBadInput, TableSizeZero) {
  Patch<uint32_t>(8, 0);
  ExpectRefused(path_, "table_size 0");
}
TEST_F(QedBadInput, TableSizeNotPowerOfTwo) {
  Patch<uint32_t>(8, 3);
  ExpectRefused(path_, "table_size 3");
}
TEST_F(QedBadInput, TableSizeTooLarge) {
  Patch<uint32_t>(8, 32);
  ExpectRefused(path_, "table_size 32");
}
TEST_F(QedBadInput, HeaderSizeZero) {
  Patch<uint32_t>(12, 0);
  ExpectRefused(path_, "header_size 0");
}
TEST_F(QedBadInput, HeaderSizeOverflowsFourGiB) {
  Patch<uint32_t>(12, 0x00100000);
  ExpectRefused(path_, "header_size");
}
TEST_F(QedBadInput, HeaderSizeCoversL1) {
  Patch<uint32_t>(12, 2);  // header clusters 0-1: the L1 table at 4096 lies inside them
  ExpectRefused(path_, "l1_table_offset");
}
TEST_F(QedBadInput, ImageSizeNotSectorMultiple) {
  Patch<uint64_t>(48, (1 << 20) + 100);
  ExpectRefused(path_, "image_size");
}
TEST_F(QedBadInput, ImageSizeBeyondTables) {
  Patch<uint64_t>(48, 1ull << 40);  // 4 KiB tables map 512 * 512 * 4 KiB = 1 GiB
  ExpectRefused(path_, "image_size");
}
TEST_F(QedBadInput, I24_ImageSizeNearTwoToThe64) {
  Patch<uint64_t>(48, ~0ull - 511);
  ExpectRefused(path_, "image_size");
}
TEST_F(QedBadInput, I20_L1Misaligned) {
  Patch<uint64_t>(40, kL1 + 8);
  ExpectRefused(path_, "l1_table_offset");
}
TEST_F(QedBadInput, I20_L1BeyondEndOfFile) {
  Patch<uint64_t>(40, 1 << 20);
  ExpectRefused(path_, "l1_table_offset");
}
TEST_F(QedBadInput, I20_L1InsideHeader) {
  Patch<uint64_t>(40, 0);
  ExpectRefused(path_, "l1_table_offset");
}
TEST_F(QedBadInput, I20_L1OffsetHuge_NoOverflow) {
  Patch<uint64_t>(40, ~0ull - 4095);
  ExpectRefused(path_, "l1_table_offset");
}
TEST_F(QedBadInput, I13_BackingNameOutsideHeaderCluster) {
  WriteWithBacking(qed::kFeatureBackingFile, 4090, 10);
  ExpectRefused(path_, "backing_filename_offset");
}
TEST_F(QedBadInput, I13_BackingNameOverlapsHeader) {
  WriteWithBacking(qed::kFeatureBackingFile, 8, 4);
  ExpectRefused(path_, "backing_filename_offset");
}
TEST_F(QedBadInput, I13_BackingNameSizeZero) {
  WriteWithBacking(qed::kFeatureBackingFile, 64, 0);
  ExpectRefused(path_, "backing_filename_size 0");
}
TEST_F(QedBadInput, I13_BackingNameTooLong) {
  WriteWithBacking(qed::kFeatureBackingFile, 64, 2000);
  ExpectRefused(path_, "backing_filename_size 2000");
}
TEST_F(QedBadInput, I15_BackingIsItself_Loop) {
  WriteWithBacking(qed::kFeatureBackingFile, 64, 7, "bad.qed");
  ExpectRefused(path_, "infinite loop");
}
TEST_F(QedBadInput, I14_BackingProtocolName_Refused) {
  WriteWithBacking(qed::kFeatureBackingFile | qed::kFeatureBackingFormatNoProbe, 64, 22,
                   "nbd://10.0.0.1/exports");
  ExpectRefused(path_, "protocol");
}
TEST_F(QedBadInput, L1EntryMisaligned) {
  Patch<uint64_t>(kL1, kL2 + 512);
  ExpectRefused(path_, "L1 entry 0");
}
TEST_F(QedBadInput, L1EntryBeyondEndOfFile) {
  Patch<uint64_t>(kL1, 1 << 30);
  ExpectRefused(path_, "L1 entry 0");
}
TEST_F(QedBadInput, L1EntryPointsAtHeader) {
  Patch<uint64_t>(kL1, 0);  // 0 is "unallocated": allowed; the header cluster is not
  ASSERT_TRUE(OpenQed(path_));
  Patch<uint64_t>(kL1, qed::kZeroCluster);
  ExpectRefused(path_, "L1 entry 0");
}

// L2 entries are checked when used: the read fails naming the file and the entry; other
// clusters still read.
TEST_F(QedBadInput, I26_L2EntryBeyondEndOfFile_ReadFails) {
  Patch<uint64_t>(kL2 + 2 * 8, 1ull << 40);
  auto image = OpenQed(path_);
  ASSERT_TRUE(image) << image.error().message();
  char b[4096];
  auto r = (*image)->Read(2 * 4096, b, sizeof(b));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(path_), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("entry 2"), std::string::npos) << r.error().message();
  EXPECT_FALSE((*image)->BlockStatus(2 * 4096, 4096));
  EXPECT_TRUE((*image)->Read(0, b, sizeof(b)));
}
TEST_F(QedBadInput, L2EntryMisaligned_ReadFails) {
  Patch<uint64_t>(kL2, kData + 1);
  auto image = OpenQed(path_);
  ASSERT_TRUE(image);
  char b[512];
  EXPECT_FALSE((*image)->Read(0, b, sizeof(b)));
}
TEST_F(QedBadInput, I31_DataClusterCutByTruncation_ReadFails) {
  Write(HandBuiltQed().substr(0, kData + 100));
  auto image = OpenQed(path_);
  ASSERT_TRUE(image) << image.error().message();
  char b[512];
  EXPECT_FALSE((*image)->Read(0, b, sizeof(b)));
}

// --- qemu-img as the oracle -------------------------------------------------------------------

std::string Sh(const std::string& cmd) {
  auto r = Run(cmd);
  EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  return r.output;
}

// A 4 MiB raw source: data at the start, a sparse run of small values, zeros, a tail.
std::string MakeSource(const TempDir& dir, const std::string& name, uint32_t seed) {
  std::string path = dir.File(name);
  std::vector<uint8_t> data(4 << 20, 0);
  auto a = testing::Pattern(0, 70000, seed);
  std::copy(a.begin(), a.end(), data.begin());
  for (size_t i = 1 << 20; i < (1 << 20) + 300000; i += 7) data[i] = static_cast<uint8_t>(i % 5);
  auto t = testing::Pattern(0, 5000, seed + 1);
  std::copy(t.begin(), t.end(), data.end() - 5000);
  WriteFile(path, std::string(data.begin(), data.end()));
  return path;
}

void ExpectReadsAsQemu(const std::string& path) {
  auto image = OpenQed(path);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(testing::ReadAll(**image), testing::QemuReadAll(path, "qed")) << path;
}

TEST(QedQemu, Empty_ReadsAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  Sh("qemu-img create -f qed " + dir.File("e.qed") + " 3M");
  ExpectReadsAsQemu(dir.File("e.qed"));
}

TEST(QedQemu, ConvertedWithDataAndHoles_ReadsAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir, "src.raw", 3);
  for (const char* opts :
       {"", "-o cluster_size=4096", "-o cluster_size=4096,table_size=2", "-o table_size=16"}) {
    std::string out = dir.File("d.qed");
    std::remove(out.c_str());
    Sh("qemu-img convert -f raw -O qed " + std::string(opts) + " " + src + " " + out);
    ExpectReadsAsQemu(out);
    auto image = OpenQed(out);
    ASSERT_TRUE(image);
    auto bytes = testing::ReadAll(**image);
    EXPECT_EQ(std::string(bytes.begin(), bytes.end()), ReadFile(src)) << opts;
  }
}

// Sizes that are not a multiple of the cluster size: the last cluster is partly outside.
TEST(QedQemu, SizeNotClusterMultiple_ReadsAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string path = dir.File("odd.qed");
  Sh("qemu-img create -f qed " + path + " 1049088");  // 1 MiB + 1 KiB
  // qemu-io cannot write into the partial last cluster itself (EIO): the data goes before it.
  Sh("qemu-io -f qed -c 'write -P 0x5c 1000000 40000' -c 'write -P 0x11 0 512' " + path);
  ExpectReadsAsQemu(path);
}

// Zero clusters (entry 1): qemu-io write -z on an image with a backing file writes them.
TEST(QedQemu, ZeroClustersOverBacking_ReadAsZeros) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string base = MakeSource(dir, "base.raw", 5), top = dir.File("top.qed");
  Sh("cd " + dir.path().string() + " && qemu-img create -f qed -b base.raw -F raw top.qed 4M");
  Sh("qemu-io -f qed -c 'write -z 0 131072' -c 'write -P 0x77 655360 4096' " + top);
  ExpectReadsAsQemu(top);
}

// A raw backing (QED_F_BACKING_FORMAT_NO_PROBE), smaller than the overlay: zeros past its end.
TEST(QedQemu, I18_RawBackingShorterThanImage_ReadsAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  MakeSource(dir, "base.raw", 9);
  Sh("truncate -s 1500000 " + dir.File("base.raw"));
  Sh("cd " + dir.path().string() + " && qemu-img create -f qed -b base.raw -F raw top.qed 4M");
  Sh("qemu-io -f qed -c 'write -P 0x42 65536 70000' -c 'write -P 0x43 2000000 4096' " +
     dir.File("top.qed"));
  ExpectReadsAsQemu(dir.File("top.qed"));
  auto image = OpenQed(dir.File("top.qed"));
  ASSERT_TRUE(image);
  ASSERT_NE((*image)->backing(), nullptr);
  EXPECT_EQ((*image)->backing()->format(), ImageFormat::kRaw);
}

// A qcow2 backing: the QED header names no format, so the backing file is probed.
TEST(QedQemu, Qcow2Backing_ProbedAndReadsAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string src = MakeSource(dir, "src.raw", 11);
  Sh("qemu-img convert -f raw -O qcow2 " + src + " " + dir.File("base.qcow2"));
  Sh("cd " + dir.path().string() + " && qemu-img create -f qed -b base.qcow2 -F qcow2 top.qed 4M");
  Sh("qemu-io -f qed -c 'write -P 0x99 4096 8192' " + dir.File("top.qed"));
  ExpectReadsAsQemu(dir.File("top.qed"));
  auto image = OpenQed(dir.File("top.qed"));
  ASSERT_TRUE(image);
  ASSERT_NE((*image)->backing(), nullptr);
  EXPECT_EQ((*image)->backing()->format(), ImageFormat::kQcow2);
}

}  // namespace
}  // namespace kite::storage
