// qcow2 extended L2 entries (subclusters) against the oracle: images qemu-img/qemu-io write
// with extended_l2=on, over a backing file and without, read identically through kite; images
// kite creates and writes pass `qemu-img check` and read as the expected content through
// qemu-img; invalid subcluster bitmaps are corruption errors naming file and guest offset.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

constexpr uint64_t kDisk = 4 << 20;

void Sh(const std::string& cmd) {
  auto r = testing::Run(cmd);
  ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
}

void ExpectKiteEqualsQemu(const std::string& path) {
  auto img = testing::OpenForTest(path, ImageFormat::kQcow2, true);
  ASSERT_TRUE(img);
  auto ours = testing::ReadAll(*img);
  auto theirs = testing::QemuReadAll(path, "qcow2");
  ASSERT_EQ(ours.size(), theirs.size());
  EXPECT_TRUE(ours == theirs) << path;
}

void ExpectQemuCheckClean(const std::string& path) {
  auto r = testing::Run("qemu-img check -U '" + path + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// A raw backing file of kDisk bytes full of a pattern (0x11 everywhere, 0x22 in the second MiB).
std::string MakeBacking(TempDir& dir) {
  std::string base = dir.File("base.raw");
  Sh("qemu-img create -q -f raw '" + base + "' 4M");
  Sh("qemu-io -f raw -c 'write -P 0x11 0 4M' -c 'write -P 0x22 1M 1M' '" + base + "'");
  return base;
}

std::string QemuExtended(TempDir& dir, const std::string& cluster, bool backed) {
  std::string p = dir.File("q.qcow2");
  std::string o = "extended_l2=on,cluster_size=" + cluster;
  if (backed) {
    MakeBacking(dir);
    Sh("qemu-img create -q -f qcow2 -o " + o + " -b base.raw -F raw '" + p + "'");
  } else {
    Sh("qemu-img create -q -f qcow2 -o " + o + " '" + p + "' 4M");
  }
  return p;
}

// Partial subclusters, zero subclusters, discards, whole clusters and a compressed-free mix.
constexpr const char* kQemuWrites =
    "-c 'write -P 0x5a 4k 4k' -c 'write -P 0x6b 70k 3000' -c 'write -z 8k 2k' "
    "-c 'write -P 0x7c 1M 256k' -c 'write -z 1088k 64k' -c 'discard 1M 32k' "
    "-c 'write -P 0x3d 2M 1' -c 'write -z 3M 1M' -c 'write -P 0x4e 3200k 8k'";

class QemuWrittenExtended : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(QemuWrittenExtended, KiteReadsIdentically) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  auto [cluster, backed] = GetParam();
  std::string p = QemuExtended(dir, cluster, backed);
  Sh(std::string("qemu-io -f qcow2 ") + kQemuWrites + " '" + p + "'");
  ExpectKiteEqualsQemu(p);
  auto report = CheckQcow2(p, RepairMode::kNone);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->ExitCode(), 0);
  EXPECT_TRUE(InspectQcow2(p)->extended_l2);
}

INSTANTIATE_TEST_SUITE_P(Clusters, QemuWrittenExtended,
                         ::testing::Combine(::testing::Values("16k", "64k", "2M"),
                                            ::testing::Bool()));

// A model of the guest disk beside the image: every kite write goes to both.
struct Model {
  std::vector<uint8_t> bytes;
  DiskImage& img;
  void Write(uint64_t off, uint64_t len, uint8_t v) {
    std::vector<uint8_t> d(len, v);
    ASSERT_TRUE(img.Write(off, d.data(), len));
    std::memset(bytes.data() + off, v, len);
  }
  void Zero(uint64_t off, uint64_t len, bool discard) {
    ASSERT_TRUE(discard ? img.Discard(off, len) : img.WriteZeroes(off, len, true));
    std::memset(bytes.data() + off, 0, len);  // v3: zero bits over a backing file
  }
};

// Kite's writes: partial subclusters, whole clusters, zeros and discards (of whole clusters:
// with a backing file they set the zero bits, so the range reads as zeros either way).
void KiteWrites(Model& m) {
  m.Write(4096, 4096, 0x5a);           // part of an unallocated cluster: allocates it whole
  m.Write(70 << 10, 3000, 0x6b);       // straddles a subcluster boundary
  m.Write(1 << 20, 256 << 10, 0x7c);   // whole clusters
  m.Write((1 << 20) + 100, 10, 0x01);  // in place
  m.Zero(2 << 20, 1 << 20, false);
  m.Write((2 << 20) + 5000, 700, 0x02);  // into a zero cluster
  m.Zero(3 << 20, 512 << 10, true);
  m.Zero((1 << 20) + 4096, 8192, false);  // part of a cluster: zeros as data
}

class KiteWrittenExtended : public ::testing::TestWithParam<bool> {};

TEST_P(KiteWrittenExtended, QemuCheckCleanAndReadsAsModel) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  bool backed = GetParam();
  Qcow2CreateOptions o;
  o.size = kDisk;
  o.extended_l2 = true;
  o.cluster_size = 64 << 10;
  std::vector<uint8_t> start(kDisk, 0);
  if (backed) {
    MakeBacking(dir);
    o.backing_file = "base.raw";
    o.backing_format = "raw";
    start = testing::QemuReadAll(dir.File("base.raw"), "raw");
  }
  std::string p = dir.File("k.qcow2");
  ASSERT_TRUE(CreateQcow2(p, o));
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    Model m{start, *img};
    KiteWrites(m);
    EXPECT_TRUE(testing::ReadAll(*img) == m.bytes);
    start = m.bytes;
  }
  ExpectQemuCheckClean(p);
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == start);
}

INSTANTIATE_TEST_SUITE_P(Backing, KiteWrittenExtended, ::testing::Bool());

// qemu leaves clusters with some subclusters allocated; kite's writes into them fill the rest
// in place (or allocate when the target is zero or unallocated), and qemu reads the result.
TEST(Qcow2ExtendedL2, KiteWritesIntoQemuSubclusters_QemuAgrees) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  for (bool backed : {false, true}) {
    TempDir dir;
    std::string p = QemuExtended(dir, "64k", backed);
    Sh(std::string("qemu-io -f qcow2 ") + kQemuWrites + " '" + p + "'");
    auto before = testing::QemuReadAll(p, "qcow2");
    {
      auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
      ASSERT_TRUE(img);
      Model m{before, *img};
      m.Write(20 << 10, 2048, 0x91);         // beside qemu's 4k..8k in cluster 0
      m.Write(4096 + 1000, 100, 0x92);       // inside qemu's allocated subcluster
      m.Write((70 << 10) - 10, 5000, 0x93);  // over allocated and unallocated subclusters
      m.Write((3200 << 10) + 16384, 4096, 0x94);
      m.Zero(64 << 10, 64 << 10, false);  // a mixed cluster made zero
      before = m.bytes;
      EXPECT_TRUE(testing::ReadAll(*img) == before);
    }
    ExpectQemuCheckClean(p);
    EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == before) << "backed " << backed;
  }
}

// Randomized: qemu-io scatters partial subcluster writes and zero writes (mixed clusters
// everywhere), then kite writes, zeroes and discards at random; kite, qemu and the model agree.
TEST(Qcow2ExtendedL2, RandomKiteOpsOverQemuSubclusters_MatchModel) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  for (bool backed : {false, true}) {
    TempDir dir;
    std::string p = QemuExtended(dir, "64k", backed);
    std::mt19937_64 rng(backed ? 7 : 11);
    std::string cmds;
    for (int i = 0; i < 60; ++i) {
      uint64_t off = (rng() % (kDisk / 512)) * 512, len = 512 * (1 + rng() % 12);
      len = std::min(len, kDisk - off);
      cmds += (i % 4 == 3 ? " -c 'write -z " : " -c 'write -P " + std::to_string(i + 1) + " ") +
              std::to_string(off) + " " + std::to_string(len) + "'";
    }
    Sh("qemu-io -f qcow2" + cmds + " '" + p + "'");
    auto model = testing::QemuReadAll(p, "qcow2");
    {
      auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
      ASSERT_TRUE(img);
      Model m{model, *img};
      for (int i = 0; i < 120; ++i) {
        uint64_t off = rng() % kDisk, len = 1 + rng() % (150 << 10);
        len = std::min(len, kDisk - off);
        if (rng() % 2) off &= ~511ull, len = std::max<uint64_t>(512, len & ~511ull);
        len = std::min(len, kDisk - off);
        uint64_t op = rng() % 5;
        if (op == 3) {
          m.Zero(off, len, false);
        } else if (op == 4) {
          m.Zero(off, len, true);
        } else {
          m.Write(off, len, static_cast<uint8_t>(0x80 + i));
        }
      }
      model = m.bytes;
      EXPECT_TRUE(testing::ReadAll(*img) == model) << "backed " << backed;
    }
    ExpectQemuCheckClean(p);
    EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == model) << "backed " << backed;
  }
}

TEST(Qcow2ExtendedL2, SnapshotOfExtendedImage_QemuCheckClean) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = QemuExtended(dir, "64k", false);
  Sh(std::string("qemu-io -f qcow2 ") + kQemuWrites + " '" + p + "'");
  auto before = testing::QemuReadAll(p, "qcow2");
  ASSERT_TRUE(CreateSnapshot(p, "s1"));
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    std::vector<uint8_t> d(8192, 0xee);
    ASSERT_TRUE(img->Write(4096, d.data(), d.size()));  // copy-on-write of a shared cluster
  }
  ExpectQemuCheckClean(p);
  ASSERT_TRUE(ApplySnapshot(p, "s1"));
  ExpectQemuCheckClean(p);
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == before);
  ASSERT_TRUE(DeleteSnapshot(p, "s1"));
  ExpectQemuCheckClean(p);
}

// The first L2 table's offset and the entry of guest cluster 0 in it (descriptor, bitmap).
uint64_t FirstL2(const std::string& p) {
  uint64_t l1 = testing::ReadBe64(p, 40);
  return testing::ReadBe64(p, l1) & 0x00fffffffffffe00ull;
}

std::string ReadError(const std::string& p, uint64_t offset) {
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2, true);
  if (!img) return "open failed";
  std::vector<uint8_t> buf(512);
  auto r = img->Read(offset, buf.data(), buf.size());
  return r ? "" : r.error().message();
}

TEST(Qcow2ExtendedL2, InvalidBitmaps_CorruptionNamingFileAndOffset) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  struct Case {
    const char* what;
    uint64_t descriptor_mask;  // kept bits of the written descriptor (0: host offset cleared)
    uint64_t bitmap;
    const char* message;
  };
  const Case cases[] = {
      {"both bits", ~0ull, (1ull << 33) | 2, "both allocated and zero"},
      {"no host", 0, 1, "without a host cluster offset"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    std::string p = QemuExtended(dir, "64k", false);
    Sh("qemu-io -f qcow2 -c 'write -P 0x5a 0 4k' '" + p + "'");
    uint64_t l2 = FirstL2(p);
    testing::PatchBe64(p, l2, testing::ReadBe64(p, l2) & c.descriptor_mask);
    testing::PatchBe64(p, l2 + 8, c.bitmap);
    std::string err = ReadError(p, 0);
    EXPECT_NE(err.find(c.message), std::string::npos) << c.what << ": " << err;
    EXPECT_NE(err.find(p), std::string::npos) << err;
    EXPECT_NE(err.find("guest offset 0"), std::string::npos) << err;
    auto report = CheckQcow2(p, RepairMode::kNone);
    ASSERT_TRUE(report);
    EXPECT_GT(report->corruptions, 0u) << c.what;
  }
}

TEST(Qcow2ExtendedL2, CompressedEntryWithBitmap_Corrupt) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string raw = dir.File("src.raw"), p = dir.File("c.qcow2");
  Sh("qemu-img create -q -f raw '" + raw + "' 1M");
  Sh("qemu-io -f raw -c 'write -P 0x33 0 1M' '" + raw + "'");
  Sh("qemu-img convert -c -O qcow2 -o extended_l2=on '" + raw + "' '" + p + "'");
  ExpectKiteEqualsQemu(p);
  testing::PatchBe64(p, FirstL2(p) + 8, 1);
  std::string err = ReadError(p, 0);
  EXPECT_NE(err.find("compressed cluster with a non-zero subcluster bitmap"), std::string::npos)
      << err;
}

TEST(Qcow2ExtendedL2, KiteCompressedWrites_QemuReadsThem) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  Qcow2CreateOptions o;
  o.size = 1 << 20;
  o.extended_l2 = true;
  std::string p = dir.File("c.qcow2");
  ASSERT_TRUE(CreateQcow2(p, o));
  std::vector<uint8_t> cluster(64 << 10, 0x44);
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    ASSERT_TRUE(WriteCompressedCluster(*img, 64 << 10, cluster));
  }
  EXPECT_EQ(testing::ReadBe64(p, FirstL2(p) + 16 + 8), 0u);  // cluster 1's bitmap
  ExpectQemuCheckClean(p);
  ExpectKiteEqualsQemu(p);
  auto data = testing::QemuReadAll(p, "qcow2");
  EXPECT_TRUE(std::equal(cluster.begin(), cluster.end(), data.begin() + (64 << 10)));
}

TEST(Qcow2ExtendedL2, SmallClusterHeader_Refused) {
  TempDir dir;
  Qcow2CreateOptions o;
  o.size = 1 << 20;
  o.extended_l2 = true;
  o.cluster_size = 4096;
  auto r = CreateQcow2(dir.File("a.qcow2"), o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
  o.cluster_size = 16384;
  ASSERT_TRUE(CreateQcow2(dir.File("a.qcow2"), o));
  testing::PatchBe32(dir.File("a.qcow2"), 20, 13);  // cluster_bits: 8 KiB
  OpenOptions ro;
  ro.read_only = true;
  auto img = OpenImage(dir.File("a.qcow2"), ImageFormat::kQcow2, ro);
  ASSERT_FALSE(img);
  EXPECT_NE(img.error().message().find("at least 16384"), std::string::npos);
}

}  // namespace
}  // namespace kite::storage
