// kite-img convert -c: compressed qcow2 output judged by qemu-img (check, compare), smaller
// than the uncompressed output; raw output refused with qemu-img's message.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "img_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::img {
namespace {

using kite::testing::TempDir;
using kite::testing::WriteFile;
using testing::Kite;
using testing::Q;
using testing::Shell;

// A 6 MiB raw disk: compressible text-like data, a hole, some noise, a short odd tail.
std::string MakeSource(const TempDir& dir) {
  std::string path = dir.File("src.raw");
  std::string d(6 << 20, '\0');
  for (size_t i = 0; i < (2u << 20); ++i) d[i] = "kite compresses clusters "[i % 25];
  uint32_t x = 12345;
  for (size_t i = 3u << 20; i < (3u << 20) + 200000; ++i) {
    x = x * 1103515245 + 12345;
    d[i] = static_cast<char>(x >> 16);
  }
  for (size_t i = (5u << 20) + 777; i < (5u << 20) + 9000; ++i) d[i] = static_cast<char>(i % 3);
  WriteFile(path, d);
  return path;
}

int QemuCompare(const std::string& a, const std::string& b) {
  return Shell("qemu-img compare " + Q(a) + " " + Q(b)).code;
}

int QemuCheck(const std::string& path) {
  return Shell("qemu-img check " + Q(path)).code;
}

class ConvertCompressed : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvertCompressed, SmallerThanUncompressed_QemuCompareEqual) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  std::string plain = dir.File("plain.qcow2"), packed = dir.File("packed.qcow2");
  std::string opts = "compression_type=" + GetParam();
  auto r1 = Kite({"convert", "-f", "raw", "-O", "qcow2", "-o", opts, src, plain});
  ASSERT_EQ(r1.code, 0) << r1.err;
  auto r2 = Kite({"convert", "-c", "-f", "raw", "-O", "qcow2", "-o", opts, src, packed});
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_EQ(QemuCheck(packed), 0);
  EXPECT_EQ(QemuCompare(src, packed), 0);
  EXPECT_LT(std::filesystem::file_size(packed), std::filesystem::file_size(plain) / 2);
  auto check = Shell("qemu-img check " + Q(packed));
  EXPECT_NE(check.out.find("compressed clusters"), std::string::npos) << check.out;
  // kite-img reads its own output back equal too.
  EXPECT_EQ(Kite({"compare", "-f", "raw", "-F", "qcow2", src, packed}).code, 0);
}

INSTANTIATE_TEST_SUITE_P(Types, ConvertCompressed, ::testing::Values("zlib", "zstd"));

TEST(ConvertCompressedEdge, QcowChainWithBacking_OnlyDifferencesCompressed) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  std::string base = dir.File("base.qcow2"), top = dir.File("top.qcow2");
  ASSERT_EQ(Shell("qemu-img convert -f raw -O qcow2 " + Q(src) + " " + Q(base)).code, 0);
  ASSERT_EQ(Shell("qemu-img create -f qcow2 -b base.qcow2 -F qcow2 " + Q(top)).code, 0);
  ASSERT_EQ(
      Shell("qemu-io -f qcow2 -c 'write -P 0x5a 1M 300k' -c 'write -z 4M 64k' " + Q(top)).code, 0);
  std::string out = dir.File("delta.qcow2"), flat = dir.File("flat.qcow2");
  auto r = Kite({"convert", "-c", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", top, out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(QemuCheck(out), 0);
  EXPECT_EQ(QemuCompare(top, out), 0);
  auto f = Kite({"convert", "-c", "-O", "qcow2", top, flat});
  ASSERT_EQ(f.code, 0) << f.err;
  EXPECT_EQ(QemuCheck(flat), 0);
  EXPECT_EQ(QemuCompare(top, flat), 0);
}

TEST(ConvertCompressedEdge, RawOutput_RefusedLikeQemu) {
  TempDir dir;
  std::string src = MakeSource(dir);
  auto r = Kite({"convert", "-c", "-f", "raw", "-O", "raw", src, dir.File("out.raw")});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("Compression not supported for this file format"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace kite::img
