// qcow2 against the oracle: images qemu-img/qemu-io write read back identically through kite;
// images kite creates and writes pass `qemu-img check` and read identically through qemu-img.
#include <gtest/gtest.h>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

void Qemu(const std::string& cmd) {
  auto r = testing::Run(cmd);
  ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
}

void QemuIo(const std::string& path, const std::string& fmt, const std::string& cmds) {
  Qemu("qemu-io -f " + fmt + " " + cmds + " '" + path + "'");
}

void ExpectKiteEqualsQemu(const std::string& path, const std::string& fmt) {
  auto img = testing::OpenForTest(path, *ParseImageFormat(fmt), true);
  ASSERT_TRUE(img);
  auto ours = testing::ReadAll(*img);
  auto theirs = testing::QemuReadAll(path, fmt);
  ASSERT_EQ(ours.size(), theirs.size());
  EXPECT_TRUE(ours == theirs) << path;
}

void ExpectQemuCheckClean(const std::string& path) {
  auto r = testing::Run("qemu-img check -U '" + path + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

struct Variant {
  std::string cluster;
  std::string compat;
};

class QemuWritten : public ::testing::TestWithParam<Variant> {};

TEST_P(QemuWritten, KiteReadsIdentically) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("q.qcow2");
  Qemu("qemu-img create -q -f qcow2 -o cluster_size=" + GetParam().cluster +
       ",compat=" + GetParam().compat + " '" + p + "' 8M");
  QemuIo(p, "qcow2",
         "-c 'write -P 0xab 0 100k' -c 'write -P 0x11 3000 5000' -c 'write -P 0x5c 7M 1M' "
         "-c 'write -z 64k 64k' -c 'discard 7M 512k' -c 'write -P 0x77 4M 513'");
  ExpectKiteEqualsQemu(p, "qcow2");
}

INSTANTIATE_TEST_SUITE_P(Clusters, QemuWritten,
                         ::testing::Values(Variant{"512", "1.1"}, Variant{"65536", "1.1"},
                                           Variant{"2M", "1.1"}, Variant{"65536", "0.10"},
                                           Variant{"4096", "0.10"}));

TEST(Qcow2Oracle, LazyRefcounts_KiteReadsIdentically) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("q.qcow2");
  Qemu("qemu-img create -q -f qcow2 -o lazy_refcounts=on '" + p + "' 4M");
  QemuIo(p, "qcow2", "-c 'write -P 0x42 1M 300k'");
  ExpectKiteEqualsQemu(p, "qcow2");
  auto info = InspectQcow2(p);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->lazy_refcounts);
}

void CompressedRoundTrip(const std::string& extra) {
  TempDir dir;
  std::string raw = dir.File("src.raw"), q = dir.File("c.qcow2");
  Qemu("qemu-img create -q -f raw '" + raw + "' 4M");
  QemuIo(raw, "raw", "-c 'write -P 0x33 0 1M' -c 'write -P 0x01 2M 70k'");
  // Mixed content that compresses, and some that does not.
  auto noise = testing::Pattern(0, 65536, 9);
  auto img = testing::OpenForTest(raw, ImageFormat::kRaw);
  ASSERT_TRUE(img->Write(3 << 20, noise.data(), noise.size()));
  img.reset();
  Qemu("qemu-img convert -c -f raw -O qcow2 " + extra + " '" + raw + "' '" + q + "'");
  ExpectKiteEqualsQemu(q, "qcow2");
}

TEST(Qcow2Oracle, CompressedZlib_KiteReadsIdentically) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  CompressedRoundTrip("");
}

TEST(Qcow2Oracle, CompressedZstd_KiteReadsIdentically) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  CompressedRoundTrip("-o compression_type=zstd");
}

TEST(Qcow2Oracle, CompressedCluster_KiteOverwrite_QemuCheckClean) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string raw = dir.File("src.raw"), q = dir.File("c.qcow2");
  Qemu("qemu-img create -q -f raw '" + raw + "' 1M");
  QemuIo(raw, "raw", "-c 'write -P 0x33 0 1M'");
  Qemu("qemu-img convert -c -f raw -O qcow2 '" + raw + "' '" + q + "'");
  auto img = testing::OpenForTest(q, ImageFormat::kQcow2);
  std::vector<uint8_t> b(1000, 0x99);
  ASSERT_TRUE(img->Write(70000, b.data(), b.size()));
  ASSERT_TRUE(img->Discard(0, 65536));
  img.reset();
  ExpectQemuCheckClean(q);
  ExpectKiteEqualsQemu(q, "qcow2");
}

TEST(Qcow2Oracle, BackingChain_RawAndQcow2Layers_KiteReadsIdentically) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string base = dir.File("base.raw"), mid = dir.File("mid.qcow2");
  std::string top = dir.File("top.qcow2");
  Qemu("qemu-img create -q -f raw '" + base + "' 4M");
  QemuIo(base, "raw", "-c 'write -P 0x10 0 4M'");
  Qemu("qemu-img create -q -f qcow2 -b base.raw -F raw '" + mid + "'");
  QemuIo(mid, "qcow2", "-c 'write -P 0x20 1M 1M' -c 'write -z 3M 64k'");
  Qemu("qemu-img create -q -f qcow2 -o cluster_size=4096 -b mid.qcow2 -F qcow2 '" + top + "'");
  QemuIo(top, "qcow2", "-c 'write -P 0x30 1500k 5000' -c 'discard 0 64k'");
  ExpectKiteEqualsQemu(top, "qcow2");
}

TEST(Qcow2Oracle, I18_ShortBacking_ReadsZerosPastItsEnd) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string base = dir.File("base.raw"), top = dir.File("top.qcow2");
  Qemu("qemu-img create -q -f raw '" + base + "' 1M");
  QemuIo(base, "raw", "-c 'write -P 0x10 0 1M'");
  Qemu("qemu-img create -q -f qcow2 -b base.raw -F raw '" + top + "' 3M");
  ExpectKiteEqualsQemu(top, "qcow2");
  auto img = testing::OpenForTest(top, ImageFormat::kQcow2);
  std::vector<uint8_t> b(100, 0x55);
  ASSERT_TRUE(img->Write((1 << 20) - 50, b.data(), b.size()));  // COW across the end
  img.reset();
  ExpectQemuCheckClean(top);
  ExpectKiteEqualsQemu(top, "qcow2");
}

TEST(Qcow2Oracle, QemuSnapshots_ListedAndApplied) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("s.qcow2");
  Qemu("qemu-img create -q -f qcow2 '" + p + "' 2M");
  QemuIo(p, "qcow2", "-c 'write -P 0x01 0 1M'");
  Qemu("qemu-img snapshot -c first '" + p + "'");
  auto before = testing::QemuReadAll(p, "qcow2");
  QemuIo(p, "qcow2", "-c 'write -P 0x02 512k 1M'");
  ExpectKiteEqualsQemu(p, "qcow2");
  auto list = ListSnapshots(p);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "first");
  ASSERT_TRUE(ApplySnapshot(p, "first"));
  ExpectQemuCheckClean(p);
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == before);
}

TEST(Qcow2Oracle, KiteSnapshots_CreateApplyDelete_QemuAgrees) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("s.qcow2");
  Qcow2CreateOptions o;
  o.size = 2 << 20;
  ASSERT_TRUE(CreateQcow2(p, o));
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  auto a = testing::Pattern(0, 1 << 20, 1);
  ASSERT_TRUE(img->Write(0, a.data(), a.size()));
  img.reset();
  ASSERT_TRUE(CreateSnapshot(p, "one"));
  ExpectQemuCheckClean(p);
  auto one = testing::QemuReadAll(p, "qcow2");
  img = testing::OpenForTest(p, ImageFormat::kQcow2);
  auto b = testing::Pattern(0, 1 << 20, 2);
  ASSERT_TRUE(img->Write(300000, b.data(), b.size()));
  img.reset();
  ASSERT_TRUE(CreateSnapshot(p, "two"));
  auto two = testing::QemuReadAll(p, "qcow2");
  auto r = testing::Run("qemu-img snapshot -U -l '" + p + "'");
  EXPECT_NE(r.output.find("one"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("two"), std::string::npos) << r.output;
  ASSERT_TRUE(ApplySnapshot(p, "one"));
  ExpectQemuCheckClean(p);
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == one);
  ASSERT_TRUE(DeleteSnapshot(p, "one"));
  ExpectQemuCheckClean(p);
  ASSERT_TRUE(ApplySnapshot(p, "two"));
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == two);
  ASSERT_TRUE(DeleteSnapshot(p, "two"));
  ExpectQemuCheckClean(p);
  EXPECT_FALSE(DeleteSnapshot(p, "two"));
}

struct CreateVariant {
  uint32_t cluster;
  std::string compat;
  int refcount_bits;
  Preallocation prealloc;
};

class KiteCreated : public ::testing::TestWithParam<CreateVariant> {};

TEST_P(KiteCreated, WritesPassQemuCheckAndReadBack) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("k.qcow2");
  Qcow2CreateOptions o;
  o.size = 3 << 20;
  o.cluster_size = GetParam().cluster;
  o.compat = GetParam().compat;
  o.refcount_bits = GetParam().refcount_bits;
  o.preallocation = GetParam().prealloc;
  ASSERT_TRUE(CreateQcow2(p, o));
  ExpectQemuCheckClean(p);
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  ASSERT_TRUE(img);
  std::vector<uint8_t> expect(o.size, 0);
  auto write = [&](uint64_t off, size_t len, uint32_t seed) {
    auto d = testing::Pattern(off, len, seed);
    ASSERT_TRUE(img->Write(off, d.data(), d.size()));
    std::copy(d.begin(), d.end(), expect.begin() + off);
  };
  write(0, 70000, 1);
  write(1 << 20, 1 << 20, 2);
  write(12345, 3000, 3);
  write((3 << 20) - 700, 700, 4);
  ASSERT_TRUE(img->WriteZeroes(1 << 20, 200000, true));
  std::fill(expect.begin() + (1 << 20), expect.begin() + (1 << 20) + 200000, 0);
  ASSERT_TRUE(img->Flush());
  EXPECT_TRUE(testing::ReadAll(*img) == expect);
  img.reset();
  ExpectQemuCheckClean(p);
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == expect);
}

INSTANTIATE_TEST_SUITE_P(Options, KiteCreated,
                         ::testing::Values(CreateVariant{65536, "1.1", 16, Preallocation::kOff},
                                           CreateVariant{512, "1.1", 16, Preallocation::kOff},
                                           CreateVariant{2 << 20, "1.1", 16, Preallocation::kOff},
                                           CreateVariant{65536, "0.10", 16, Preallocation::kOff},
                                           CreateVariant{4096, "1.1", 1, Preallocation::kOff},
                                           CreateVariant{4096, "1.1", 4, Preallocation::kOff},
                                           CreateVariant{4096, "1.1", 64, Preallocation::kOff},
                                           CreateVariant{1024, "1.1", 8, Preallocation::kOff},
                                           CreateVariant{65536, "1.1", 16,
                                                         Preallocation::kMetadata},
                                           CreateVariant{65536, "1.1", 16, Preallocation::kFalloc},
                                           CreateVariant{4096, "1.1", 16, Preallocation::kFull}));

TEST(Qcow2Oracle, SmallClusters_RefcountTableGrows_QemuCheckClean) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("k.qcow2");
  Qcow2CreateOptions o;
  o.size = 8 << 20;
  o.cluster_size = 512;
  o.refcount_bits = 64;  // 64 entries per block, 64 blocks per table cluster
  ASSERT_TRUE(CreateQcow2(p, o));
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  auto d = testing::Pattern(0, 4 << 20, 5);
  ASSERT_TRUE(img->Write(0, d.data(), d.size()));
  img.reset();
  ExpectQemuCheckClean(p);
  auto back = testing::QemuReadAll(p, "qcow2");
  EXPECT_TRUE(std::equal(d.begin(), d.end(), back.begin()));
}

TEST(Qcow2Oracle, KiteCreate_WithBacking_QemuInfoAgrees) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string base = dir.File("base.raw"), top = dir.File("top.qcow2");
  ASSERT_TRUE(CreateRaw(base, 1 << 20, Preallocation::kOff));
  Qcow2CreateOptions o;
  o.backing_file = "base.raw";
  o.backing_format = "raw";
  ASSERT_TRUE(CreateQcow2(top, o));
  auto r = testing::Run("qemu-img info -U '" + top + "'");
  EXPECT_NE(r.output.find("backing file format: raw"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("virtual size: 1 MiB"), std::string::npos) << r.output;
  ExpectQemuCheckClean(top);
  ASSERT_TRUE(CreateRaw(dir.File("other.raw"), 1 << 20, Preallocation::kOff));
  ASSERT_TRUE(SetBackingFile(top, "other.raw", "raw"));
  auto info = InspectQcow2(top);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->backing_file, "other.raw");
  ExpectQemuCheckClean(top);
}

TEST(Qcow2Oracle, Resize_GrowAndShrink_QemuCheckClean) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("r.qcow2");
  Qcow2CreateOptions o;
  o.size = 1 << 20;
  o.cluster_size = 512;
  ASSERT_TRUE(CreateQcow2(p, o));
  ResizeOptions grow;
  ASSERT_TRUE(ResizeImage(p, ImageFormat::kQcow2, 64 << 20, grow));
  auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
  ASSERT_EQ(img->size(), 64u << 20);
  std::vector<uint8_t> b(4096, 0x71);
  ASSERT_TRUE(img->Write(60 << 20, b.data(), b.size()));
  img.reset();
  ExpectQemuCheckClean(p);
  ResizeOptions shrink;
  EXPECT_FALSE(ResizeImage(p, ImageFormat::kQcow2, 1 << 20, shrink));
  shrink.shrink = true;
  EXPECT_FALSE(ResizeImage(p, ImageFormat::kQcow2, 1 << 20, shrink));  // data would be lost
  shrink.force = true;
  ASSERT_TRUE(ResizeImage(p, ImageFormat::kQcow2, 1 << 20, shrink));
  ExpectQemuCheckClean(p);
  auto info = InspectQcow2(p);
  EXPECT_EQ(info->virtual_size, 1u << 20);
}

}  // namespace
}  // namespace kite::storage
