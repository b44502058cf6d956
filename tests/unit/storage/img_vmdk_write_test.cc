// VMDK export: `kite-img convert -O vmdk -o subformat=streamOptimized` checked against qemu-img
// (compare, info, check, converting back) and kite's own reader; monolithicSparse byte for byte
// as qemu-img's (but for the random CID); the descriptor as qemu-img writes it; the cases
// refused (-W, -n, unknown options, other subformats, a 0-byte disk).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <random>

#include "img_test_util.h"
#include "img_vmdk_test_util.h"
#include "storage/img/vmdk_writer.h"
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
using testing::ReadAll;
using testing::Shell;

const std::string kStream = "subformat=streamOptimized";

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_size;
}

void QemuIo(const std::string& fmt, const std::string& path, const std::string& cmd) {
  ASSERT_EQ(Shell("qemu-io -f " + fmt + " -c " + Q(cmd) + " " + Q(path)).code, 0) << cmd;
}

// Everything an exported VMDK must satisfy: qemu-img sees a clean, compressed streamOptimized
// disk equal to the source, and so does kite's reader; qemu-img's raw copy of it is the source.
void ExpectGoodExport(const TempDir& dir, const std::string& src, const std::string& fmt,
                      const std::string& vmdk, bool stream = true) {
  EXPECT_EQ(Shell("qemu-img compare -f " + fmt + " -F vmdk " + Q(src) + " " + Q(vmdk)).code, 0);
  EXPECT_EQ(Shell("qemu-img check -f vmdk " + Q(vmdk)).code, 0);
  std::string info = Shell("qemu-img info -f vmdk " + Q(vmdk)).out;
  std::string type = stream ? "streamOptimized" : "monolithicSparse";
  EXPECT_NE(info.find("create type: " + type), std::string::npos) << info;
  EXPECT_EQ(info.find("compressed: true") != std::string::npos, stream) << info;
  std::string src_raw = dir.File("src-copy.raw"), back = dir.File("back.raw");
  ASSERT_EQ(Shell("qemu-img convert -f " + fmt + " -O raw " + Q(src) + " " + Q(src_raw)).code, 0);
  ASSERT_EQ(Shell("qemu-img convert -f vmdk -O raw " + Q(vmdk) + " " + Q(back)).code, 0);
  std::string expected = ReadFile(src_raw);
  expected.resize((expected.size() + 511) / 512 * 512, '\0');  // VMDK disks are whole sectors
  EXPECT_TRUE(ReadFile(back) == expected);
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_TRUE(ReadAll(**image) == expected);
}

// 70 MiB + 1536: three grain tables (the middle one without data) and a last grain of 3
// sectors.
std::string MakeQcow2Source(const TempDir& dir) {
  std::string src = dir.File("src.qcow2");
  EXPECT_EQ(Shell("qemu-img create -q -f qcow2 " + Q(src) + " 73401856").code, 0);
  QemuIo("qcow2", src, "write -P 0x11 0 64k");
  QemuIo("qcow2", src, "write -P 0x22 1048676 300");
  QemuIo("qcow2", src, "write -P 0x33 3M 200k");
  QemuIo("qcow2", src, "write -P 0x44 70M 1536");
  QemuIo("qcow2", src, "write -z 3200k 64k");  // zeros inside data: not a grain
  return src;
}

TEST(ImgVmdkWrite, Qcow2WithHolesAndPartialGrain_EqualForQemuAndKite) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string src = MakeQcow2Source(dir);
  std::string vmdk = dir.File("out.vmdk");
  auto r = Kite({"convert", "-f", "qcow2", "-O", "vmdk", "-o", kStream, src, vmdk});
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectGoodExport(dir, src, "qcow2", vmdk);
  // Same order of size as qemu-img's own file (which preallocates its tables at the start).
  std::string theirs = dir.File("qemu.vmdk");
  ASSERT_EQ(
      Shell("qemu-img convert -f qcow2 -O vmdk -o " + kStream + " " + Q(src) + " " + Q(theirs))
          .code,
      0);
  EXPECT_LE(FileSize(vmdk), 2 * FileSize(theirs) + (64 << 10));
}

TEST(ImgVmdkWrite, RawNotWholeSectors_LastSectorPadded) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string data(200000, '\0');
  std::mt19937 rng(3);
  for (size_t i = 0; i < 4096; ++i) data[i] = static_cast<char>(rng());
  std::memcpy(data.data() + data.size() - 4, "end!", 4);
  std::string src = dir.File("src.raw"), vmdk = dir.File("out.vmdk");
  WriteFile(src, data);
  auto r = Kite({"convert", "-f", "raw", "-O", "vmdk", "-o", kStream, src, vmdk});
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectGoodExport(dir, src, "raw", vmdk);
}

TEST(ImgVmdkWrite, EmptyDisk_MetadataOnly) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = dir.File("src.raw"), vmdk = dir.File("out.vmdk");
  ASSERT_EQ(Shell("qemu-img create -q -f raw " + Q(src) + " 100M").code, 0);
  auto r = Kite({"convert", "-f", "raw", "-O", "vmdk", "-o", kStream, src, vmdk});
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectGoodExport(dir, src, "raw", vmdk);
  // Header and descriptor (64 KiB), GD marker and directory, footer marker, footer, EOS.
  EXPECT_EQ(FileSize(vmdk), (64 << 10) + 5 * 512);
}

// -c is accepted, as by qemu-img: the stream is compressed anyway.
TEST(ImgVmdkWrite, OnlyData_EveryGrainWritten) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string data(1 << 20, '\0');
  std::mt19937 rng(5);
  for (char& c : data) c = static_cast<char>(rng() % 4 + 1);
  std::string src = dir.File("src.raw"), vmdk = dir.File("out.vmdk");
  WriteFile(src, data);
  auto r = Kite({"convert", "-c", "-S", "0", "-f", "raw", "-O", "vmdk", "-o", kStream, src, vmdk});
  ASSERT_EQ(r.code, 0) << r.err;
  ExpectGoodExport(dir, src, "raw", vmdk);
}

// The embedded descriptor's text without the CID's value (random in both tools, and written
// without leading zeros).
std::string DescriptorWithoutCid(const std::string& bytes) {
  std::string text = bytes.substr(512, 20 * 512);
  text.resize(std::strlen(text.c_str()));
  size_t cid = text.find("\nCID=");
  if (cid != std::string::npos) text.erase(cid + 5, text.find('\n', cid + 1) - (cid + 5));
  return text;
}

// The file but for its CID: the header, the descriptor's text, the rest from sector 21.
std::string WithoutCid(const std::string& vmdk) {
  std::string bytes = ReadFile(vmdk);
  EXPECT_GE(bytes.size(), 21u * 512) << vmdk;
  if (bytes.size() < 21 * 512) return bytes;
  return bytes.substr(0, 512) + DescriptorWithoutCid(bytes) + bytes.substr(21 * 512);
}

// monolithicSparse (qemu-img's default subformat) has qemu-img's layout exactly.
TEST(ImgVmdkWrite, MonolithicSparse_SameBytesAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string src = MakeQcow2Source(dir);
  ASSERT_EQ(::mkdir(dir.File("q").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.File("k").c_str(), 0755), 0);
  std::string ours = dir.File("k/d.vmdk"), theirs = dir.File("q/d.vmdk");
  auto r = Kite({"convert", "-f", "qcow2", "-O", "vmdk", src, ours});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(Shell("qemu-img convert -f qcow2 -O vmdk " + Q(src) + " " + Q(theirs)).code, 0);
  EXPECT_TRUE(WithoutCid(ours) == WithoutCid(theirs));
  ExpectGoodExport(dir, src, "qcow2", ours, false);
}

TEST(ImgVmdkWrite, CreateDefault_SameBytesAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.File("q").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.File("k").c_str(), 0755), 0);
  std::string ours = dir.File("k/d.vmdk"), theirs = dir.File("q/d.vmdk");
  auto r = Kite({"create", "-f", "vmdk", ours, "100M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Formatting '" + ours + "', fmt=vmdk size=104857600 compat6=off hwversion=undefined\n");
  ASSERT_EQ(Shell("qemu-img create -q -f vmdk " + Q(theirs) + " 100M").code, 0);
  EXPECT_TRUE(WithoutCid(ours) == WithoutCid(theirs));
  // zeroed_grain: header version 2 and flag bit 2; legacyESX: 255 heads.
  const std::string opts = "zeroed_grain=on,adapter_type=legacyESX";
  r = Kite({"create", "-q", "-f", "vmdk", "-o", opts, ours, "10M"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(Shell("qemu-img create -q -f vmdk -o " + opts + " " + Q(theirs) + " 10M").code, 0);
  EXPECT_TRUE(WithoutCid(ours) == WithoutCid(theirs));
}

// qemu-img's text, for a CID with leading zeros (which qemu-img leaves out).
TEST(ImgVmdkWrite, DescriptorText_QemuTemplate) {
  VmdkCreateOptions options;
  options.subformat = "streamOptimized";
  EXPECT_EQ(VmdkDescriptorText(options, 391, "a.vmdk", 0x1234),
            "# Disk DescriptorFile\nversion=1\nCID=1234\nparentCID=ffffffff\n"
            "createType=\"streamOptimized\"\n\n# Extent description\nRW 391 SPARSE \"a.vmdk\"\n\n"
            "# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n"
            "ddb.geometry.cylinders = \"0\"\nddb.geometry.heads = \"16\"\n"
            "ddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n"
            "ddb.toolsVersion = \"2147483647\"\n");
}

TEST(ImgVmdkWrite, Options_DescriptorAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = testing::MakeVmdkSource(dir);
  ASSERT_EQ(::mkdir(dir.File("q").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.File("k").c_str(), 0755), 0);
  for (std::string opts : {kStream, kStream + ",adapter_type=lsilogic,hwversion=7,toolsversion=9",
                           kStream + ",adapter_type=legacyESX,compat6=on"}) {
    std::string ours = dir.File("k/d.vmdk"), theirs = dir.File("q/d.vmdk");
    auto r = Kite({"convert", "-f", "raw", "-O", "vmdk", "-o", opts, src, ours});
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(
        Shell("qemu-img convert -f raw -O vmdk -o " + opts + " " + Q(src) + " " + Q(theirs)).code,
        0);
    EXPECT_EQ(DescriptorWithoutCid(ReadFile(ours)), DescriptorWithoutCid(ReadFile(theirs))) << opts;
    EXPECT_EQ(ReadFile(ours).substr(0, 8), ReadFile(theirs).substr(0, 8));  // magic, version
  }
}

TEST(ImgVmdkWrite, Create_StreamOptimizedAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string vmdk = dir.File("c.vmdk");
  auto r = Kite({"create", "-f", "vmdk", "-o", kStream + ",adapter_type=buslogic", vmdk, "5M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Formatting '" + vmdk +
                       "', fmt=vmdk size=5242880 adapter_type=buslogic compat6=off "
                       "hwversion=undefined subformat=streamOptimized\n");
  EXPECT_EQ(Shell("qemu-img check -f vmdk " + Q(vmdk)).code, 0);
  auto image = storage::OpenVmdk(vmdk);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(ReadAll(**image), std::string(5 << 20, '\0'));
}

struct Refusal {
  std::vector<std::string> args;  // before IN OUT
  std::string message;
};

TEST(ImgVmdkWrite, Refused_NoOutputLeft) {
  TempDir dir;
  std::string src = dir.File("src.raw"), out = dir.File("out.vmdk");
  WriteFile(src, std::string(1 << 16, 'x'));
  const Refusal cases[] = {
      {{"-W", "-o", kStream}, "-W is not supported with -O vmdk"},
      {{"-o", kStream + ",foo=1"}, "Invalid parameter 'foo'"},
      {{"-o", "preallocation=full," + kStream}, "Invalid parameter 'preallocation'"},
      {{"-o", "subformat=monolithicFlat"},
       "streamOptimized and monolithicSparse only, not monolithicFlat"},
      {{"-o", "subformat=twoGbMaxExtentSparse"}, "only, not twoGbMaxExtentSparse"},
      {{"-o", "subformat=bogus"}, "Unknown subformat 'bogus'"},
      {{"-o", kStream + ",adapter_type=scsi"}, "Unknown adapter type 'scsi'"},
      {{"-o", kStream + ",compat6=on,hwversion=7"}, "compat6 cannot be enabled with hwversion"},
      {{"-o", kStream + ",toolsversion=1\"2"}, "Invalid toolsversion"},
  };
  for (const Refusal& c : cases) {
    std::vector<std::string> args = {"convert", "-f", "raw", "-O", "vmdk"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.insert(args.end(), {src, out});
    auto r = Kite(args);
    EXPECT_EQ(r.code, 1) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(Exists(out)) << c.message;
  }
}

// kite-img writes no VMDK in place; -o is refused with -n anyway.
TEST(ImgVmdkWrite, SkipCreate_Refused) {
  TempDir dir;
  std::string src = dir.File("src.raw"), out = dir.File("out.vmdk");
  WriteFile(src, std::string(1 << 16, 'x'));
  WriteFile(out, "keep");
  auto r = Kite({"convert", "-n", "-f", "raw", "-O", "vmdk", src, out});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("-n is not supported with -O vmdk"), std::string::npos) << r.err;
  r = Kite({"convert", "-n", "-f", "raw", "-O", "vmdk", "-o", kStream, src, out});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("-o has no effect when skipping image creation"), std::string::npos)
      << r.err;
  EXPECT_EQ(ReadFile(out), "keep");
}

TEST(ImgVmdkWrite, ZeroByteDisk_Refused) {
  TempDir dir;
  std::string src = dir.File("src.raw"), out = dir.File("out.vmdk");
  WriteFile(src, "");
  auto r = Kite({"convert", "-f", "raw", "-O", "vmdk", "-o", kStream, src, out});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("at least one sector"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(out));
}

TEST(ImgVmdkWrite, Measure_RefusedAsQemu) {
  auto r = Kite({"measure", "-O", "vmdk", "-o", kStream, "--size", "1G"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("Block driver 'vmdk' does not support size measurement"), std::string::npos)
      << r.err;
}

TEST(ImgVmdkWrite, Writer_EarlierOffsetRefused_RestReadsBack) {
  for (const char* subformat : {"streamOptimized", "monolithicSparse"}) {
    SCOPED_TRACE(subformat);
    TempDir dir;
    VmdkCreateOptions options;
    options.subformat = subformat;
    auto w = VmdkWriter::Create(dir.File("w.vmdk"), 1 << 20, options);
    ASSERT_TRUE(w) << w.error().message();
    std::string grain(64 << 10, 'a');
    ASSERT_TRUE((*w)->Write(128 << 10, grain.data(), grain.size()));
    auto back = (*w)->Write(0, grain.data(), grain.size());
    ASSERT_FALSE(back);
    EXPECT_NE(back.error().message().find("in disk order"), std::string::npos);
    EXPECT_FALSE((*w)->Write((1 << 20) - 512, grain.data(), 1024));  // beyond the disk
    char byte = 0;
    EXPECT_FALSE((*w)->Read(0, &byte, 1));
    ASSERT_TRUE((*w)->Finish(false));
    EXPECT_FALSE((*w)->Write(1 << 19, grain.data(), 512));  // after Finish
    auto image = storage::OpenVmdk(dir.File("w.vmdk"));
    ASSERT_TRUE(image) << image.error().message();
    std::string expected(1 << 20, '\0');
    std::memcpy(expected.data() + (128 << 10), grain.data(), grain.size());
    EXPECT_TRUE(ReadAll(**image) == expected);
  }
}

}  // namespace
}  // namespace kite::img
