// BAD_INPUTS.md section 6.2: malformed qcow2 images (I2-I32), made by patching bytes of a valid
// image. Fatal ones fail the open with a specific message and leave the file unchanged; the
// others fail the request (IOERR) and set the corrupt bit.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::ReadFile;
using kite::testing::TempDir;
using testing::PatchBe32;
using testing::PatchBe64;
using testing::ReadBe64;

constexpr uint64_t kCluster = 65536;
constexpr uint64_t kMask = 0x00fffffffffffe00ull;

class BadImage : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("bad.qcow2");
    Qcow2CreateOptions o;
    o.size = 1 << 20;
    ASSERT_TRUE(CreateQcow2(path_, o));
    auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
    auto d = testing::Pattern(0, kCluster, 1);
    ASSERT_TRUE(img->Write(0, d.data(), d.size()));
  }
  uint64_t L1Offset() { return ReadBe64(path_, 40); }
  uint64_t L2Offset() { return ReadBe64(path_, L1Offset()) & kMask; }

  // Both read-only and read-write opens fail with `needle`, and nothing is written.
  void ExpectRefused(const std::string& needle, bool read_only_too = true) {
    std::string before = ReadFile(path_);
    for (bool ro : {false, true}) {
      if (ro && !read_only_too) continue;
      OpenOptions o;
      o.read_only = ro;
      auto r = OpenImage(path_, ImageFormat::kQcow2, o);
      ASSERT_FALSE(r) << "open succeeded (read_only=" << ro << ")";
      EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
      EXPECT_NE(r.error().message().find(path_), std::string::npos) << r.error().message();
    }
    EXPECT_TRUE(ReadFile(path_) == before) << "a refused open wrote to the image";
  }

  bool CorruptBit() { return ReadBe64(path_, 72) & 2; }

  TempDir dir_;
  std::string path_;
};

TEST_F(BadImage, I2_WrongMagic_Refused) {
  PatchBe32(path_, 0, 0x12345678);
  ExpectRefused("not in qcow2 format");
}

TEST_F(BadImage, I2_Version1_Refused) {
  PatchBe32(path_, 4, 1);
  ExpectRefused("Unsupported qcow2 version 1");
}

TEST_F(BadImage, I2_Version4_Refused) {
  PatchBe32(path_, 4, 4);
  ExpectRefused("Unsupported qcow2 version 4");
}

TEST_F(BadImage, I2_TruncatedHeader_Refused) {
  ASSERT_EQ(::truncate(path_.c_str(), 90), 0);
  ExpectRefused("truncated");
  ASSERT_EQ(::truncate(path_.c_str(), 50), 0);
  ExpectRefused("truncated");
}

TEST_F(BadImage, I3_HeaderLengthHuge_Refused) {
  PatchBe32(path_, 100, 0xffffffff);
  ExpectRefused("header exceeds cluster size");
}

TEST_F(BadImage, I3_HeaderLengthMisaligned_Refused) {
  PatchBe32(path_, 100, 105);
  ExpectRefused("header_length");
}

TEST_F(BadImage, I4_ClusterBitsTooSmallOrLarge_Refused) {
  PatchBe32(path_, 20, 8);
  ExpectRefused("cluster_bits");
  PatchBe32(path_, 20, 22);
  ExpectRefused("cluster_bits");
}

TEST_F(BadImage, I5_UnknownIncompatibleBit5_Refused) {
  PatchBe64(path_, 72, 1ull << 5);
  ExpectRefused("Unsupported qcow2 feature");
}

TEST_F(BadImage, I5_UnknownIncompatibleBit63_Refused) {
  PatchBe64(path_, 72, 1ull << 63);
  ExpectRefused("Unsupported qcow2 feature");
}

TEST_F(BadImage, I6_CorruptBit_ReadOnlyOnly) {
  PatchBe64(path_, 72, 2);
  ExpectRefused("corrupt", false);
  auto ro = testing::OpenForTest(path_, ImageFormat::kQcow2, true);
  ASSERT_TRUE(ro);
  std::vector<uint8_t> b(100);
  EXPECT_TRUE(ro->Read(0, b.data(), b.size()));
}

TEST_F(BadImage, I7_ExternalDataFileBit_Refused) {
  PatchBe64(path_, 72, 4);
  ExpectRefused("'data-file' is required for this image");
}

// Replaces the end-of-extensions marker at header_length with a data-file extension.
void AddDataFileExtension(const std::string& path, const std::string& name) {
  uint64_t at = ReadBe64(path, 96) & 0xffffffff;  // header_length
  std::vector<uint8_t> ext(8 + 16 + 8, 0);        // extension, padded name, end marker
  const uint8_t head[8] = {0x44, 0x41, 0x54, 0x41, 0, 0, 0, uint8_t(name.size())};
  std::copy(head, head + 8, ext.begin());
  std::copy(name.begin(), name.end(), ext.begin() + 8);
  testing::PatchFile(path, at, ext);
}

// The image names a host file as its data file: kite opens none unless the disk names it
// (data_file=PATH); see qcow2_data_file_test.cc for the allowed cases.
TEST_F(BadImage, I7_DataFileExtensionAndBit_RefusedNoHostFileOpened) {
  AddDataFileExtension(path_, "/etc/shadow");
  PatchBe64(path_, 72, 4);
  ExpectRefused("kite opens it only when the disk names it (data_file=PATH)");
}

// Without the incompatible bit the extension means nothing (qemu ignores it too): the image
// opens and its data stays in the image.
TEST_F(BadImage, I7_DataFileExtensionWithoutBit_Ignored) {
  AddDataFileExtension(path_, "/etc/shadow");
  auto image = testing::OpenForTest(path_, ImageFormat::kQcow2, true);
  ASSERT_TRUE(image);
  EXPECT_EQ(image->data_path(), path_);
  std::vector<uint8_t> b(100);
  EXPECT_TRUE(image->Read(0, b.data(), b.size()));
}

TEST_F(BadImage, I8_DirtyBit_ReadWriteOpenRebuildsRefcounts) {
  KITE_REQUIRE_TOOL("qemu-img");
  // Zero the refcount of the data cluster (as a lazy-refcount crash leaves it) + dirty bit.
  uint64_t data = ReadBe64(path_, L2Offset()) & kMask;
  uint64_t refblock = ReadBe64(path_, ReadBe64(path_, 48));
  testing::PatchFile(path_, refblock + (data / kCluster) * 2, {0, 0});
  PatchBe64(path_, 72, 1);
  std::string before = ReadFile(path_);
  {
    auto ro = testing::OpenForTest(path_, ImageFormat::kQcow2, true);
    ASSERT_TRUE(ro);
  }
  EXPECT_TRUE(ReadFile(path_) == before) << "read-only open must not repair";
  {
    auto rw = testing::OpenForTest(path_, ImageFormat::kQcow2);
    ASSERT_TRUE(rw);
  }
  auto r = testing::Run("qemu-img check '" + path_ + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ReadBe64(path_, 72) & 1, 0u);
}

TEST_F(BadImage, I9_UnknownAutoclearBits_ClearedOnWriteOpen) {
  PatchBe64(path_, 88, 0xf0);
  { auto rw = testing::OpenForTest(path_, ImageFormat::kQcow2); }
  EXPECT_EQ(ReadBe64(path_, 88), 0u);
}

TEST_F(BadImage, I10_Encrypted_Refused) {
  PatchBe32(path_, 32, 1);
  ExpectRefused("crypt_method");
}

TEST_F(BadImage, I11_RefcountOrder7_Refused) {
  PatchBe32(path_, 96, 7);
  ExpectRefused("Reference count entry width too large");
}

TEST_F(BadImage, I12_ExtensionLengthOverflowsCluster_Refused) {
  uint64_t at = 112;
  testing::PatchFile(path_, at, {0x12, 0x34, 0x56, 0x78, 0xff, 0xff, 0xff, 0xf0});
  ExpectRefused("Header extension too large");
}

TEST_F(BadImage, I12_DuplicateExtension_Refused) {
  const uint8_t ext[16] = {0x12, 0x34, 0x56, 0x78, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<uint8_t> two(40, 0);  // the same extension twice, then the end marker
  std::copy(ext, ext + 16, two.begin());
  std::copy(ext, ext + 16, two.begin() + 16);
  testing::PatchFile(path_, 112, two);
  ExpectRefused("Duplicate header extension");
}

TEST_F(BadImage, I13_BackingNameTooLong_Refused) {
  PatchBe64(path_, 8, 4096);
  PatchBe32(path_, 16, 1024);
  ExpectRefused("Backing file name too long");
}

TEST_F(BadImage, I13_BackingNameOverlapsHeader_Refused) {
  PatchBe64(path_, 8, 16);
  PatchBe32(path_, 16, 10);
  ExpectRefused("Invalid backing file offset");
}

TEST_F(BadImage, I13_BackingNameOutsideCluster0_Refused) {
  PatchBe64(path_, 8, kCluster - 4);
  PatchBe32(path_, 16, 100);
  ExpectRefused("Invalid backing file offset");
}

TEST_F(BadImage, I19_L1Huge_Refused) {
  PatchBe32(path_, 36, 0x7fffffff);
  ExpectRefused("Active L1 table too large");
}

TEST_F(BadImage, I20_L1OffsetMisaligned_Refused) {
  PatchBe64(path_, 40, L1Offset() + 8);
  ExpectRefused("Invalid L1 table offset");
}

TEST_F(BadImage, I20_L1OffsetPastEof_Refused) {
  PatchBe64(path_, 40, 1ull << 40);
  ExpectRefused("Invalid L1 table offset");
}

TEST_F(BadImage, I21_L1TooSmall_Refused) {
  PatchBe64(path_, 24, 1ull << 40);  // 1 TiB needs 2048 L1 entries
  ExpectRefused("L1 table is too small");
}

TEST_F(BadImage, I22_RefcountTableEmpty_Refused) {
  PatchBe32(path_, 56, 0);
  ExpectRefused("does not contain a reference count table");
}

TEST_F(BadImage, I22_RefcountTableHuge_Refused) {
  PatchBe32(path_, 56, 0xffffff);
  ExpectRefused("Reference count table too large");
}

TEST_F(BadImage, I22_RefcountTableMisaligned_Refused) {
  PatchBe64(path_, 48, kCluster + 512);
  ExpectRefused("Invalid reference count table offset");
}

TEST_F(BadImage, I22_RefcountBlockPastEof_Refused) {
  PatchBe64(path_, ReadBe64(path_, 48), 1ull << 50);  // first refcount table entry
  ExpectRefused("Invalid reference count block offset");
}

TEST_F(BadImage, I23_TooManySnapshots_Refused) {
  PatchBe32(path_, 60, 0xffffffff);
  ExpectRefused("Too many snapshots");
}

TEST_F(BadImage, I23_SnapshotOffsetBad_Refused) {
  PatchBe32(path_, 60, 1);
  PatchBe64(path_, 64, 12345);
  ExpectRefused("Invalid snapshot table offset");
}

TEST_F(BadImage, I23_SnapshotNameOverflowsTable_Refused) {
  ASSERT_TRUE(CreateSnapshot(path_, "s1"));
  uint64_t table = ReadBe64(path_, 64);
  testing::PatchFile(path_, table + 12, {0xff, 0xff, 0xff, 0xff});  // id and name sizes
  ExpectRefused("Snapshot table entry overflows");
}

TEST_F(BadImage, I24_VirtualSizeNear2To63_Refused) {
  PatchBe64(path_, 24, (1ull << 63) - 512);
  ExpectRefused("Image size too big");
}

TEST_F(BadImage, I25_L2ReservedBits_IoErrorAndCorruptBit) {
  uint64_t l2 = L2Offset();
  PatchBe64(path_, l2, ReadBe64(path_, l2) | 0x2);
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
  std::vector<uint8_t> b(512);
  auto r = img->Read(0, b.data(), b.size());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("reserved bits"), std::string::npos);
  EXPECT_TRUE(CorruptBit());
  EXPECT_FALSE(img->Write(kCluster * 3, b.data(), b.size()));  // no more writes
}

TEST_F(BadImage, I26_L2EntryHugeOffset_IoErrorNoHugeFile) {
  uint64_t l2 = L2Offset();
  PatchBe64(path_, l2, (1ull << 63) | (0xff0000000000ull));
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
  std::vector<uint8_t> b(512, 1);
  EXPECT_FALSE(img->Read(0, b.data(), b.size()));
  EXPECT_FALSE(img->Write(0, b.data(), b.size()));
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_LT(st.st_size, 1 << 24);
}

TEST_F(BadImage, I27_L2PointsAtL1Table_WriteRefusedCorruptSet) {
  uint64_t l2 = L2Offset();
  PatchBe64(path_, l2, (1ull << 63) | L1Offset());
  std::string l1_before = ReadFile(path_).substr(L1Offset(), 64);
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
  std::vector<uint8_t> b(512, 0xee);
  auto r = img->Write(0, b.data(), b.size());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("Preventing invalid write on metadata"), std::string::npos);
  EXPECT_TRUE(CorruptBit());
  EXPECT_EQ(ReadFile(path_).substr(L1Offset(), 64), l1_before);
}

TEST_F(BadImage, I29_RefcountZeroForL1_NotHandedOut) {
  uint64_t refblock = ReadBe64(path_, ReadBe64(path_, 48));
  testing::PatchFile(path_, refblock + (L1Offset() / kCluster) * 2, {0, 0});
  std::string l1_before = ReadFile(path_).substr(L1Offset(), kCluster);
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
  std::vector<uint8_t> b(kCluster, 0xee);
  EXPECT_FALSE(img->Write(kCluster * 5, b.data(), b.size()));
  EXPECT_EQ(ReadFile(path_).substr(L1Offset(), kCluster), l1_before);
}

TEST_F(BadImage, I30_CompressedTruncatedStream_IoError) {
  uint64_t l2 = L2Offset();
  uint64_t data = ReadBe64(path_, l2) & kMask;
  // Compressed entry: sector count field (bits 54..61 for 64k clusters) = 1 sector of garbage.
  PatchBe64(path_, l2, (1ull << 62) | data);
  testing::PatchFile(path_, data, std::vector<uint8_t>(512, 0xff));
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
  std::vector<uint8_t> b(512);
  EXPECT_FALSE(img->Read(0, b.data(), b.size()));
}

TEST_F(BadImage, I30_CompressedBomb_StopsAtClusterSize) {
  uint64_t l2 = L2Offset();
  uint64_t data = ReadBe64(path_, l2) & kMask;
  std::vector<uint8_t> zeros(8 << 20, 0), out(1 << 20);  // 128 clusters of output
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY), Z_OK);
  z.next_in = zeros.data();
  z.avail_in = static_cast<uInt>(zeros.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  size_t n = out.size() - z.avail_out;
  deflateEnd(&z);
  ASSERT_LT(n, kCluster);
  out.resize(n);
  testing::PatchFile(path_, data, out);
  uint64_t sectors = (n + 511) / 512;
  PatchBe64(path_, l2, (1ull << 62) | ((sectors - 1) << 54) | data);
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
  std::vector<uint8_t> b(kCluster, 1);
  ASSERT_TRUE(img->Read(0, b.data(), b.size()));  // one cluster's worth, no more
  EXPECT_EQ(std::count(b.begin(), b.end(), 0), static_cast<long>(kCluster));
}

TEST_F(BadImage, I31_TruncatedMidData_IoError) {
  uint64_t data = ReadBe64(path_, L2Offset()) & kMask;
  uint64_t l2 = L2Offset();
  // Cut inside whichever of the data cluster and the L2 table comes first.
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(std::min(data, l2) + 4096)), 0);
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2, true);
  ASSERT_TRUE(img);
  std::vector<uint8_t> b(512);
  EXPECT_FALSE(img->Read(0, b.data(), b.size()));
}

TEST_F(BadImage, I32_ZeroLengthFile_Refused) {
  ASSERT_EQ(::truncate(path_.c_str(), 0), 0);
  ExpectRefused("not in qcow2 format");
}

}  // namespace
}  // namespace kite::storage
