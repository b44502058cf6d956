// VMDK import: images qemu-img writes (monolithicSparse, streamOptimized) read back equal to
// their source; a hand-built stream-optimized file with its grain directory in the footer
// (VMware's layout) reads right; malformed headers, descriptors and grains are refused.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cstring>
#include <map>
#include <random>

#include "img_test_util.h"
#include "img_vmdk_test_util.h"
#include "storage/vmdk/vmdk_format.h"
#include "storage/vmdk/vmdk_image.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::img {
namespace {

using kite::testing::ReadFile;
using kite::testing::TempDir;
using kite::testing::WriteFile;
using testing::Q;
using testing::ReadAll;
using testing::Shell;

template <typename T>
void Put(std::string& s, size_t at, T v) {
  if (s.size() < at + sizeof(T)) s.resize(at + sizeof(T));
  std::memcpy(s.data() + at, &v, sizeof(T));
}

TEST(Vmdk, MonolithicSparseFromQemu_ReadsEqualToSource) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir), vmdk = dir.File("d.vmdk");
  ASSERT_EQ(Shell("qemu-img convert -f raw -O vmdk " + Q(src) + " " + Q(vmdk)).code, 0);
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ((*image)->size(), 1u << 20);
  EXPECT_EQ(ReadAll(**image), ReadFile(src));
}

TEST(Vmdk, StreamOptimizedFromQemu_ReadsEqualToSource) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir), vmdk = dir.File("s.vmdk");
  ASSERT_EQ(Shell("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + Q(src) + " " +
                  Q(vmdk))
                .code,
            0);
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(ReadAll(**image), ReadFile(src));
}

TEST(Vmdk, BlockStatus_UnallocatedGrainsReadAsZero) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir), vmdk = dir.File("d.vmdk");
  ASSERT_EQ(Shell("qemu-img convert -f raw -O vmdk " + Q(src) + " " + Q(vmdk)).code, 0);
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image);
  auto first = (*image)->BlockStatus(0, 1 << 20);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->data);
  auto hole = (*image)->BlockStatus(100000, 1000);
  ASSERT_TRUE(hole);
  EXPECT_TRUE(hole->zero);
  EXPECT_FALSE(hole->data);
}

TEST(Vmdk, Write_Refused) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir), vmdk = dir.File("d.vmdk");
  ASSERT_EQ(Shell("qemu-img convert -f raw -O vmdk " + Q(src) + " " + Q(vmdk)).code, 0);
  std::string before = ReadFile(vmdk);
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image);
  char byte = 1;
  EXPECT_FALSE((*image)->Write(0, &byte, 1));
  EXPECT_FALSE((*image)->WriteZeroes(0, 512, false));
  EXPECT_EQ(ReadFile(vmdk), before);
}

// --- A hand-built stream-optimized VMDK, VMware layout (grain directory in the footer). ---

constexpr uint64_t kGrainSectors = 128;
constexpr uint64_t kCapacity = 2048;  // sectors: 1 MiB, 16 grains, one grain table

std::string Header(uint64_t gd_offset) {
  std::string h(512, '\0');
  Put<uint32_t>(h, 0, storage::kVmdkMagic);
  Put<uint32_t>(h, 4, 3);
  Put<uint32_t>(
      h, 8,
      storage::kVmdkFlagNewlineTest | storage::kVmdkFlagCompressed | storage::kVmdkFlagMarkers);
  Put<uint64_t>(h, 12, kCapacity);
  Put<uint64_t>(h, 20, kGrainSectors);
  Put<uint64_t>(h, 28, 1);  // descriptor at sector 1, one sector
  Put<uint64_t>(h, 36, 1);
  Put<uint32_t>(h, 44, 512);
  Put<uint64_t>(h, 56, gd_offset);
  h[73] = '\n', h[74] = ' ', h[75] = '\r', h[76] = '\n';
  Put<uint16_t>(h, 77, storage::kVmdkCompressDeflate);
  return h;
}

std::string Pad(std::string s) {
  s.resize((s.size() + 511) / 512 * 512, '\0');
  return s;
}

std::string Marker(uint64_t value, uint32_t size, uint32_t type) {
  std::string m(512, '\0');
  Put<uint64_t>(m, 0, value);
  Put<uint32_t>(m, 8, size);
  Put<uint32_t>(m, 12, type);
  return m;
}

std::string Deflate(const std::string& in) {
  uLongf len = compressBound(in.size());
  std::string out(len, '\0');
  EXPECT_EQ(compress(reinterpret_cast<Bytef*>(out.data()), &len,
                     reinterpret_cast<const Bytef*>(in.data()), in.size()),
            Z_OK);
  out.resize(len);
  return out;
}

struct StreamVmdk {
  std::map<uint64_t, std::string> grains;  // grain index -> payload (compressed as given)
  std::map<uint64_t, uint64_t> lba_override;

  std::string Build() const {
    std::string f = Header(storage::kVmdkGdAtEnd);
    f +=
        Pad("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n"
            "createType=\"streamOptimized\"\nRW 2048 SPARSE \"x.vmdk\"\n");
    std::vector<uint32_t> gt(512, 0);
    for (const auto& [index, packed] : grains) {
      gt[index] = static_cast<uint32_t>(f.size() / 512);
      std::string g(12, '\0');
      auto lba = lba_override.count(index) ? lba_override.at(index) : index * kGrainSectors;
      Put<uint64_t>(g, 0, lba);
      Put<uint32_t>(g, 8, static_cast<uint32_t>(packed.size()));
      f += Pad(g + packed);
    }
    f += Marker(4, 0, storage::kVmdkMarkerGt);
    uint32_t gt_sector = static_cast<uint32_t>(f.size() / 512);
    f += std::string(reinterpret_cast<const char*>(gt.data()), 2048);
    f += Marker(1, 0, storage::kVmdkMarkerGd);
    uint64_t gd_sector = f.size() / 512;
    std::string gd(512, '\0');
    Put<uint32_t>(gd, 0, gt_sector);
    f += gd;
    f += Marker(1, 0, storage::kVmdkMarkerFooter);
    f += Header(gd_sector);
    f += Marker(0, 0, storage::kVmdkMarkerEos);
    return f;
  }
};

std::string GrainData(char fill) {
  return std::string(kGrainSectors * 512, fill);
}

TEST(Vmdk, StreamWithFooterDirectory_Reads) {
  TempDir dir;
  StreamVmdk s;
  s.grains[0] = Deflate(GrainData('a'));
  s.grains[9] = Deflate(GrainData('z'));
  WriteFile(dir.File("f.vmdk"), s.Build());
  auto image = storage::OpenVmdk(dir.File("f.vmdk"));
  ASSERT_TRUE(image) << image.error().message();
  std::string all = ReadAll(**image);
  EXPECT_EQ(all.substr(0, 65536), GrainData('a'));
  EXPECT_EQ(all.substr(65536, 65536), std::string(65536, '\0'));
  EXPECT_EQ(all.substr(9 * 65536, 65536), GrainData('z'));
}

TEST(Vmdk, StreamWithFooterDirectory_ConvertEqualsContent) {
  TempDir dir;
  StreamVmdk s;
  s.grains[3] = Deflate(GrainData('q'));
  WriteFile(dir.File("f.vmdk"), s.Build());
  std::string expected(1 << 20, '\0');
  std::memset(expected.data() + 3 * 65536, 'q', 65536);
  WriteFile(dir.File("expected.raw"), expected);
  auto r = testing::Kite(
      {"convert", "-f", "vmdk", "-O", "raw", dir.File("f.vmdk"), dir.File("out.raw")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(dir.File("out.raw")), expected);
}

Result<void> ReadGrainOf(const StreamVmdk& s, const TempDir& dir, uint64_t grain) {
  WriteFile(dir.File("g.vmdk"), s.Build());
  auto image = storage::OpenVmdk(dir.File("g.vmdk"));
  if (!image) return std::move(image).error();
  std::string buf(512, '\0');
  return (*image)->Read(grain * 65536, buf.data(), buf.size());
}

TEST(Vmdk, I30_GrainMarkerWrongLba_ReadFails) {
  TempDir dir;
  StreamVmdk s;
  s.grains[2] = Deflate(GrainData('a'));
  s.lba_override[2] = 0;
  EXPECT_FALSE(ReadGrainOf(s, dir, 2));
}

TEST(Vmdk, I30_TruncatedDeflate_ReadFails) {
  TempDir dir;
  StreamVmdk s;
  std::string packed = Deflate(GrainData('a'));
  s.grains[1] = packed.substr(0, packed.size() / 2);
  EXPECT_FALSE(ReadGrainOf(s, dir, 1));
}

TEST(Vmdk, I30_DeflateBomb_ReadFailsAtGrainSize) {
  TempDir dir;
  StreamVmdk s;
  s.grains[1] = Deflate(std::string(kGrainSectors * 512 * 8, 'b'));  // 8 grains' worth
  auto r = ReadGrainOf(s, dir, 1);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("beyond the grain size"), std::string::npos);
}

TEST(Vmdk, I30_ShortStream_ReadFails) {
  TempDir dir;
  StreamVmdk s;
  s.grains[1] = Deflate(std::string(1000, 'b'));
  EXPECT_FALSE(ReadGrainOf(s, dir, 1));
}

TEST(Vmdk, MissingEndOfStreamMarker_Refused) {
  TempDir dir;
  StreamVmdk s;
  std::string f = s.Build();
  f.resize(f.size() - 512);
  WriteFile(dir.File("t.vmdk"), f);
  EXPECT_FALSE(storage::OpenVmdk(dir.File("t.vmdk")));
}

// --- Header and descriptor validation on a qemu-made monolithicSparse file. ---

class VmdkMalformed : public ::testing::Test {
 protected:
  void SetUp() override {
    KITE_REQUIRE_TOOL("qemu-img");
    std::string src = testing::MakeVmdkSource(dir_);
    path_ = dir_.File("m.vmdk");
    ASSERT_EQ(Shell("qemu-img convert -f raw -O vmdk " + Q(src) + " " + Q(path_)).code, 0);
    bytes_ = ReadFile(path_);
  }
  Result<std::unique_ptr<storage::DiskImage>> Reopen() {
    WriteFile(path_, bytes_);
    return storage::OpenVmdk(path_);
  }
  void ReplaceText(const std::string& from, const std::string& to) {
    size_t at = bytes_.find(from);
    ASSERT_NE(at, std::string::npos);
    ASSERT_EQ(from.size(), to.size());
    bytes_.replace(at, from.size(), to);
  }
  TempDir dir_;
  std::string path_, bytes_;
};

TEST_F(VmdkMalformed, Unchanged_Opens) {
  EXPECT_TRUE(Reopen());
}

TEST_F(VmdkMalformed, I2_WrongMagic_Refused) {
  bytes_[0] = 'X';
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, I2_Version4_Refused) {
  Put<uint32_t>(bytes_, 4, 4);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, UnknownFlag_Refused) {
  Put<uint32_t>(bytes_, 8, 3 | (1u << 5));
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, I4_GrainNotPowerOfTwo_Refused) {
  Put<uint64_t>(bytes_, 20, 100);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, I4_GrainHuge_Refused) {
  Put<uint64_t>(bytes_, 20, 1ull << 40);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, ZeroGtesPerGt_Refused) {
  Put<uint32_t>(bytes_, 44, 0);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, TooManyGtesPerGt_Refused) {
  Put<uint32_t>(bytes_, 44, 1024);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, I24_CapacityHuge_Refused) {
  Put<uint64_t>(bytes_, 12, 1ull << 62);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, I20_GrainDirectoryBeyondEof_Refused) {
  Put<uint64_t>(bytes_, 56, 1ull << 30);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, GrainDirectoryAtHeader_Refused) {
  Put<uint64_t>(bytes_, 56, 0);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, GrainTableBeyondEof_Refused) {
  uint64_t gd = 0;
  std::memcpy(&gd, bytes_.data() + 56, 8);
  Put<uint32_t>(bytes_, gd * 512, 0x7fffffff);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, I31_GrainBeyondEof_ReadFails) {
  uint64_t gd = 0;
  std::memcpy(&gd, bytes_.data() + 56, 8);
  uint32_t gt = 0;
  std::memcpy(&gt, bytes_.data() + gd * 512, 4);
  Put<uint32_t>(bytes_, uint64_t{gt} * 512, 0x00ffffff);  // grain 0 far past the end
  auto image = Reopen();
  ASSERT_TRUE(image);
  char buf[512];
  EXPECT_FALSE((*image)->Read(0, buf, sizeof(buf)));
}

TEST_F(VmdkMalformed, NewlineCharsDamaged_Refused) {
  bytes_[75] = '\n';
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, CompressedWithoutMarkers_Refused) {
  Put<uint32_t>(bytes_, 8, 3 | storage::kVmdkFlagCompressed);
  Put<uint16_t>(bytes_, 77, 1);
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, ParentLink_Refused) {
  ReplaceText("parentCID=ffffffff", "parentCID=12345678");
  auto r = Reopen();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("parent"), std::string::npos);
}

TEST_F(VmdkMalformed, OtherCreateType_Refused) {
  ReplaceText("createType=\"monolithicSparse\"", "createType=\"monolithicFlat\"\n\n");
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, FlatExtent_Refused) {
  ReplaceText("SPARSE", "FLAT  ");
  EXPECT_FALSE(Reopen());
}

TEST_F(VmdkMalformed, ExtentSizeDisagrees_Refused) {
  ReplaceText("RW 2048 ", "RW 2047 ");
  EXPECT_FALSE(Reopen());
}

// `kite-img create -f qcow2 -b X.vmdk -F vmdk`: the overlay (kite run's way to write over a
// VMDK) opens through its VMDK backing file; kite-img and qemu-img read it as the source.
TEST(Vmdk, CreateQcow2OverVmdk_OverlayReadsAsSource) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir), vmdk = dir.File("b.vmdk");
  std::string over = dir.File("over.qcow2"), out = dir.File("out.raw");
  ASSERT_EQ(Shell("qemu-img convert -f raw -O vmdk " + Q(src) + " " + Q(vmdk)).code, 0);
  auto created = testing::Kite({"create", "-f", "qcow2", "-b", vmdk, "-F", "vmdk", over});
  ASSERT_EQ(created.code, 0) << created.err;
  auto converted = testing::Kite({"convert", "-f", "qcow2", "-O", "raw", over, out});
  ASSERT_EQ(converted.code, 0) << converted.err;
  EXPECT_EQ(ReadFile(out), ReadFile(src));
  ASSERT_EQ(Shell("qemu-img convert -f qcow2 -O raw " + Q(over) + " " + Q(out)).code, 0);
  EXPECT_EQ(ReadFile(out), ReadFile(src));
}

// A descriptor file is read (img_vmdk_extents_test.cc); one without a createType is refused.
TEST(Vmdk, DescriptorFileWithoutCreateType_Refused) {
  TempDir dir;
  WriteFile(dir.File("d.vmdk"), "# Disk DescriptorFile\nversion=1\n" + std::string(600, ' '));
  auto r = storage::OpenVmdk(dir.File("d.vmdk"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("createType"), std::string::npos) << r.error().message();
}

TEST(Vmdk, I32_Fifo_RefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.File("fifo").c_str(), 0600), 0);
  EXPECT_FALSE(storage::OpenVmdk(dir.File("fifo")));
}

TEST(Vmdk, I32_Directory_Refused) {
  TempDir dir;
  EXPECT_FALSE(storage::OpenVmdk(dir.path().string()));
}

TEST(Vmdk, I2_TruncatedHeader_Refused) {
  TempDir dir;
  WriteFile(dir.File("t.vmdk"), "KDMV\x01");
  EXPECT_FALSE(storage::OpenVmdk(dir.File("t.vmdk")));
}

}  // namespace
}  // namespace kite::img
