// VMDK descriptor files with separate extents, read as qemu-img reads them: monolithicFlat,
// twoGbMaxExtentSparse and twoGbMaxExtentFlat images qemu-img writes (small, and over 2 GiB
// so that they have several extents), vmfs and mixed descriptors written by hand; and the
// refusals: a missing, short or mis-sized extent, malformed extent lines, unsupported create
// and extent types, parents, special files. Each names the descriptor, the file and the field.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>

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
using testing::Kite;
using testing::Q;
using testing::Qemu;
using testing::ReadAll;
using testing::Shell;

// What qemu-img reads from `path` (any format it probes), as raw bytes.
std::string QemuReads(const std::string& path) {
  std::string out = path + ".qemu.raw";
  EXPECT_EQ(Shell("qemu-img convert -O raw " + Q(path) + " " + Q(out)).code, 0) << path;
  return ReadFile(out);
}

// Opening fails with a message containing every one of `needles`.
void ExpectRefused(const std::string& path, std::initializer_list<std::string> needles) {
  auto r = storage::OpenVmdk(path);
  ASSERT_FALSE(r) << path << " opened";
  for (const std::string& n : needles) {
    EXPECT_NE(r.error().message().find(n), std::string::npos) << r.error().message();
  }
}

std::string Descriptor(const std::string& create_type, const std::string& extents) {
  return "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"" +
         create_type + "\"\n\n# Extent description\n" + extents + "\n# The Disk Data Base\n";
}

class VmdkSubformat : public ::testing::TestWithParam<const char*> {};

TEST_P(VmdkSubformat, FromQemu_ReadsEqualToSource) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir), vmdk = dir.File("d.vmdk");
  Qemu("qemu-img convert -f raw -O vmdk -o subformat=" + std::string(GetParam()) + " " + Q(src) +
       " " + Q(vmdk));
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(ReadAll(**image), ReadFile(src));
  // kite-img probes the descriptor file as qemu-img does, and its conversion is identical.
  auto r = Kite({"convert", "-O", "qcow2", vmdk, dir.File("out.qcow2")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Shell("qemu-img compare " + Q(vmdk) + " " + Q(dir.File("out.qcow2"))).code, 0);
  auto info = Kite({"info", vmdk});
  EXPECT_NE(info.out.find("file format: vmdk"), std::string::npos) << info.out << info.err;
}

INSTANTIATE_TEST_SUITE_P(Qemu, VmdkSubformat,
                         ::testing::Values("monolithicFlat", "twoGbMaxExtentSparse",
                                           "twoGbMaxExtentFlat"));

// Over 2 GiB: three extents; writes across both extent boundaries.
void WriteAcrossBoundaries(const std::string& vmdk) {
  Qemu(
      "qemu-io -f vmdk -c 'write -P 0x61 0 65536' -c 'write -P 0x62 2147479552 8192' "
      "-c 'write -P 0x63 4294963200 8192' -c 'write -P 0x64 5368705024 4096' " +
      Q(vmdk));
}

TEST(VmdkExtents, TwoGbMaxExtentSparse_ThreeExtents_ConvertIdentical) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string vmdk = dir.File("d.vmdk");
  Qemu("qemu-img create -f vmdk -o subformat=twoGbMaxExtentSparse " + Q(vmdk) + " 5G");
  WriteAcrossBoundaries(vmdk);
  ASSERT_TRUE(std::filesystem::exists(dir.File("d-s003.vmdk")));
  auto r = Kite({"convert", "-f", "vmdk", "-O", "qcow2", vmdk, dir.File("out.qcow2")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Shell("qemu-img compare " + Q(vmdk) + " " + Q(dir.File("out.qcow2"))).code, 0);
}

TEST(VmdkExtents, TwoGbMaxExtentFlat_ThreeExtents_ReadsAcrossBoundaries) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string vmdk = dir.File("d.vmdk");
  Qemu("qemu-img create -f vmdk -o subformat=twoGbMaxExtentFlat " + Q(vmdk) + " 5G");
  WriteAcrossBoundaries(vmdk);
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ((*image)->size(), 5ull << 30);
  std::string buf(8192, '\0');
  ASSERT_TRUE((*image)->Read(2147479552, buf.data(), buf.size()));
  EXPECT_EQ(buf, std::string(8192, 0x62));
  ASSERT_TRUE((*image)->Read(4294963200, buf.data(), buf.size()));
  EXPECT_EQ(buf, std::string(8192, 0x63));
  ASSERT_TRUE((*image)->Read(5368705024 - 4096, buf.data(), buf.size()));
  EXPECT_EQ(buf, std::string(4096, '\0') + std::string(4096, 0x64));
}

// vmfs (qemu-img does not write it): a descriptor and one VMFS extent, as qemu-img reads it.
TEST(VmdkExtents, Vmfs_HandWritten_ReadsAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir);
  ASSERT_EQ(::rename(src.c_str(), dir.File("d-flat.vmdk").c_str()), 0);
  WriteFile(dir.File("d.vmdk"), Descriptor("vmfs", "RW 2048 VMFS \"d-flat.vmdk\""));
  auto image = storage::OpenVmdk(dir.File("d.vmdk"));
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(ReadAll(**image), QemuReads(dir.File("d.vmdk")));
}

// Several extents of both kinds, a flat one at an offset into its file, one named by an
// absolute path and one through "..": read as qemu-img reads them.
TEST(VmdkExtents, MixedExtents_HandWritten_ReadsAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir);
  Qemu("qemu-img convert -f raw -O vmdk " + Q(src) + " " + Q(dir.File("sparse.vmdk")));
  ASSERT_EQ(::mkdir(dir.File("sub").c_str(), 0700), 0);
  WriteFile(dir.File("flat.bin"), std::string(4096, 'x') + ReadFile(src));
  WriteFile(dir.File("sub/d.vmdk"), Descriptor("monolithicFlat",
                                               "RW 100 FLAT \"../flat.bin\" 8\n"
                                               "RW 2048 SPARSE \"" +
                                                   dir.File("sparse.vmdk") +
                                                   "\"\n"
                                                   "RDONLY 16 FLAT \"../flat.bin\" 0\n"));
  auto image = storage::OpenVmdk(dir.File("sub/d.vmdk"));
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ((*image)->size(), (100u + 2048 + 16) * 512);
  std::string qemu = QemuReads(dir.File("sub/d.vmdk"));
  std::string mine = ReadAll(**image);
  // qemu-img ignores RDONLY extents (it reads only RW lines); kite reads them. The rest agrees.
  ASSERT_GE(qemu.size(), (100u + 2048) * 512);
  EXPECT_EQ(mine.substr(0, (100 + 2048) * 512), qemu.substr(0, (100 + 2048) * 512));
  EXPECT_EQ(mine.substr((100 + 2048) * 512),
            std::string(4096, 'x') + ReadFile(src).substr(0, 4096));
}

// --- refusals ---------------------------------------------------------------------------------

class VmdkDescriptorBad : public ::testing::Test {
 protected:
  void SetUp() override { WriteFile(dir_.File("d-flat.vmdk"), std::string(1 << 20, 'z')); }
  void Write(const std::string& create_type, const std::string& extents) {
    WriteFile(path_, Descriptor(create_type, extents));
  }
  TempDir dir_;
  std::string path_ = dir_.File("d.vmdk");
};

TEST_F(VmdkDescriptorBad, Valid_Opens) {
  Write("monolithicFlat", "RW 2048 FLAT \"d-flat.vmdk\" 0");
  auto image = storage::OpenVmdk(path_);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ((*image)->size(), 1u << 20);
  EXPECT_FALSE((*image)->Write(0, "a", 1));
}
TEST_F(VmdkDescriptorBad, MissingExtent_RefusedNamingFile) {
  Write("twoGbMaxExtentFlat", "RW 2048 FLAT \"d-flat.vmdk\" 0\nRW 2048 FLAT \"d-f002.vmdk\" 0");
  ExpectRefused(path_, {path_, "d-f002.vmdk"});
}
TEST_F(VmdkDescriptorBad, FlatExtentTooShort_Refused) {
  Write("monolithicFlat", "RW 2049 FLAT \"d-flat.vmdk\" 0");
  ExpectRefused(path_, {path_, "d-flat.vmdk", "too short"});
}
TEST_F(VmdkDescriptorBad, FlatOffsetPastEnd_Refused) {
  Write("monolithicFlat", "RW 2048 FLAT \"d-flat.vmdk\" 1");
  ExpectRefused(path_, {"too short", "offset 1"});
}
TEST_F(VmdkDescriptorBad, SparseCapacityDisagrees_Refused) {
  KITE_REQUIRE_TOOL("qemu-img");
  Qemu("qemu-img create -f vmdk " + Q(dir_.File("s.vmdk")) + " 1M");
  Write("twoGbMaxExtentSparse", "RW 4096 SPARSE \"s.vmdk\"");
  ExpectRefused(path_, {path_, "s.vmdk", "capacity"});
}
TEST_F(VmdkDescriptorBad, SparseExtentNotVmdk_Refused) {
  Write("twoGbMaxExtentSparse", "RW 2048 SPARSE \"d-flat.vmdk\"");
  ExpectRefused(path_, {path_, "d-flat.vmdk", "magic"});
}
TEST_F(VmdkDescriptorBad, FlatWithoutOffset_Refused) {
  Write("monolithicFlat", "RW 2048 FLAT \"d-flat.vmdk\"");
  ExpectRefused(path_, {path_, "FLAT offset"});
}
TEST_F(VmdkDescriptorBad, VmfsWithOffset_Refused) {
  Write("vmfs", "RW 2048 VMFS \"d-flat.vmdk\" 0");
  ExpectRefused(path_, {path_, "no offset expected"});
}
TEST_F(VmdkDescriptorBad, ExtentSizeZero_Refused) {
  Write("monolithicFlat", "RW 0 FLAT \"d-flat.vmdk\" 0");
  ExpectRefused(path_, {"extent size 0"});
}
TEST_F(VmdkDescriptorBad, ExtentSizeNotANumber_Refused) {
  Write("monolithicFlat", "RW 20x8 FLAT \"d-flat.vmdk\" 0");
  ExpectRefused(path_, {"bad extent size"});
}
TEST_F(VmdkDescriptorBad, ExtentSizeHuge_Refused) {
  Write("monolithicFlat", "RW 99999999999999999999999 FLAT \"d-flat.vmdk\" 0");
  ExpectRefused(path_, {"extent size"});
}
TEST_F(VmdkDescriptorBad, ExtentsAddUpBeyondLimit_Refused) {
  std::string lines;
  for (int i = 0; i < 3; ++i) lines += "RW 68719476736 FLAT \"d-flat.vmdk\" 0\n";
  Write("twoGbMaxExtentFlat", lines);
  ExpectRefused(path_, {"64 TiB"});
}
TEST_F(VmdkDescriptorBad, UnquotedFileName_Refused) {
  Write("monolithicFlat", "RW 2048 FLAT d-flat.vmdk 0");
  ExpectRefused(path_, {"quoted file name"});
}
TEST_F(VmdkDescriptorBad, EmptyFileName_Refused) {
  Write("monolithicFlat", "RW 2048 FLAT \"\" 0");
  ExpectRefused(path_, {"file name empty"});
}
TEST_F(VmdkDescriptorBad, NoAccessExtent_Refused) {
  Write("monolithicFlat", "NOACCESS 2048 FLAT \"d-flat.vmdk\" 0");
  ExpectRefused(path_, {"NOACCESS"});
}
TEST_F(VmdkDescriptorBad, UnsupportedExtentType_Refused) {
  for (const char* type : {"VMFSSPARSE", "SESPARSE", "ZERO", "VMFSRDM"}) {
    Write("monolithicFlat", "RW 2048 " + std::string(type) + " \"d-flat.vmdk\"");
    ExpectRefused(path_, {path_, type, "not supported"});
  }
}
TEST_F(VmdkDescriptorBad, UnsupportedCreateType_Refused) {
  for (const char* type : {"vmfsSparse", "seSparse", "monolithicSparse", ""}) {
    Write(type, "RW 2048 FLAT \"d-flat.vmdk\" 0");
    ExpectRefused(path_, {path_, "createType"});
  }
}
TEST_F(VmdkDescriptorBad, NoExtents_Refused) {
  Write("monolithicFlat", "");
  ExpectRefused(path_, {path_, "no extents"});
}
TEST_F(VmdkDescriptorBad, Parent_Refused) {
  WriteFile(path_,
            "# Disk DescriptorFile\nversion=1\nparentCID=1234abcd\n"
            "createType=\"monolithicFlat\"\nRW 2048 FLAT \"d-flat.vmdk\" 0\n");
  ExpectRefused(path_, {"parentCID"});
}
TEST_F(VmdkDescriptorBad, TooManyExtents_Refused) {
  std::string lines;
  for (int i = 0; i < 1025; ++i) lines += "RW 1 FLAT \"d-flat.vmdk\" 0\n";
  Write("twoGbMaxExtentFlat", lines);
  ExpectRefused(path_, {"more than 1024 extents"});
}
TEST_F(VmdkDescriptorBad, ExtentIsDirectoryOrFifo_Refused) {
  ASSERT_EQ(::mkdir(dir_.File("dir.vmdk").c_str(), 0700), 0);
  ASSERT_EQ(::mkfifo(dir_.File("fifo.vmdk").c_str(), 0600), 0);
  for (const char* name : {"dir.vmdk", "fifo.vmdk"}) {
    Write("monolithicFlat", "RW 1 FLAT \"" + std::string(name) + "\" 0");
    ExpectRefused(path_, {path_, name});
  }
}
TEST_F(VmdkDescriptorBad, DescriptorLargerThanOneMiB_Refused) {
  WriteFile(path_, Descriptor("monolithicFlat", "RW 2048 FLAT \"d-flat.vmdk\" 0") +
                       std::string(1 << 20, '#'));
  ExpectRefused(path_, {path_, "larger than 1 MiB"});
}

TEST(VmdkDescriptorProbe, LooksLikeDescriptor) {
  EXPECT_TRUE(storage::LooksLikeVmdkDescriptor("# Disk DescriptorFile\nversion=1\n"));
  EXPECT_TRUE(storage::LooksLikeVmdkDescriptor("\n  \n# c\nversion=3\r\n"));
  EXPECT_FALSE(storage::LooksLikeVmdkDescriptor("# Disk DescriptorFile\nversion=4\n"));
  EXPECT_FALSE(storage::LooksLikeVmdkDescriptor("version=1"));  // cut off
  EXPECT_FALSE(storage::LooksLikeVmdkDescriptor(std::string("\0\0\0\0", 4)));
}

}  // namespace
}  // namespace kite::img
