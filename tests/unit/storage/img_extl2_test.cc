// kite-img over qcow2 extended L2 entries (extended_l2=on) against qemu-img: create (its
// Formatting line and refusals), info (text and JSON), convert -O qcow2 -o extended_l2=on
// (plain and -c), measure, check, and amend's refusal to downgrade.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "img_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::img {
namespace {

using Json = nlohmann::json;
using kite::testing::ReadFile;
using kite::testing::TempDir;
using testing::Kite;
using testing::Q;
using testing::Qemu;
using testing::Shell;

std::string AsKite(std::string qemu_text) {
  for (size_t at; (at = qemu_text.find("qemu-img:")) != std::string::npos;) {
    qemu_text.replace(at, 8, "kite-img");
  }
  return qemu_text;
}

TEST(ImgExtendedL2, Create_FormattingLineAndInfoAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir kdir, qdir;
  std::string name = "e.qcow2";
  for (const char* o : {"extended_l2=on", "extended_l2=on,cluster_size=16k,lazy_refcounts=on"}) {
    auto k = Kite({"create", "-f", "qcow2", "-o", o, kdir.File(name), "64M"});
    ASSERT_EQ(k.code, 0) << k.err;
    auto q =
        Shell("qemu-img create -f qcow2 -o " + std::string(o) + " " + Q(qdir.File(name)) + " 64M");
    ASSERT_EQ(q.code, 0);
    std::string qline = q.out;
    qline.replace(qline.find(qdir.File(name)), qdir.File(name).size(), kdir.File(name));
    EXPECT_EQ(k.out, qline);
    EXPECT_EQ(Shell("qemu-img check " + Q(kdir.File(name))).code, 0);
    auto text = Kite({"info", kdir.File(name)});
    ASSERT_EQ(text.code, 0) << text.err;
    EXPECT_EQ(text.out, Shell("qemu-img info " + Q(kdir.File(name))).out);
    EXPECT_NE(text.out.find("    extended l2: true\n"), std::string::npos) << text.out;
    auto json = Kite({"info", "--output=json", kdir.File(name)});
    ASSERT_EQ(json.code, 0) << json.err;
    Json kj = Json::parse(json.out);
    Json qj = Json::parse(Shell("qemu-img info --output=json " + Q(kdir.File(name))).out);
    EXPECT_EQ(kj["format-specific"], qj["format-specific"]);
    EXPECT_EQ(kj["format-specific"]["data"]["extended-l2"], true);
  }
}

TEST(ImgExtendedL2, Create_Refusals_SameMessageAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  for (const char* o : {"extended_l2=on,cluster_size=4k", "extended_l2=on,compat=0.10"}) {
    std::string p = dir.File("r.qcow2");
    auto q = Shell("(qemu-img create -q -f qcow2 -o " + std::string(o) + " " + Q(p) + " 1M 2>&1)");
    EXPECT_EQ(q.code, 1) << o;
    auto k = Kite({"create", "-q", "-f", "qcow2", "-o", o, p, "1M"});
    EXPECT_EQ(k.code, 1) << o;
    EXPECT_EQ(k.err, AsKite(q.out)) << o;
  }
}

// Preallocation with a backing file: host clusters whose subclusters are all unallocated
// (bitmap 0, as qemu), so the image still reads as its backing file.
TEST(ImgExtendedL2, PreallocatedOverBacking_ReadsAsBacking) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string base = dir.File("base.raw"), p = dir.File("p.qcow2");
  Qemu("qemu-img create -f raw " + Q(base) + " 1M && qemu-io -f raw -c 'write -P 9 0 1M' " +
       Q(base));
  auto k = Kite({"create", "-q", "-f", "qcow2", "-o", "extended_l2=on,preallocation=metadata", "-b",
                 "base.raw", "-F", "raw", p});
  ASSERT_EQ(k.code, 0) << k.err;
  EXPECT_EQ(Shell("qemu-img check " + Q(p)).code, 0);
  EXPECT_EQ(Shell("qemu-img compare -f raw -F qcow2 " + Q(base) + " " + Q(p)).code, 0);
  EXPECT_EQ(Shell("qemu-img map --output=json " + Q(p)).out,
            Shell("cd " + Q(dir.path()) +
                  " && qemu-img create -q -f qcow2 -o "
                  "extended_l2=on,preallocation=metadata -b base.raw -F raw q.qcow2 && "
                  "qemu-img map --output=json q.qcow2")
                .out);
}

TEST(ImgExtendedL2, AmendDowngrade_RefusedAsQemu_FileUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string image = dir.File("e.qcow2"), kite = dir.File("k.qcow2"), qemu = dir.File("q.qcow2");
  Qemu("qemu-img create -f qcow2 -o extended_l2=on " + Q(image) + " 1M");
  Qemu("qemu-io -c 'write -P 1 4k 4k' " + Q(image));
  for (const char* o : {"compat=0.10", "extended_l2=off"}) {
    Qemu("cp " + Q(image) + " " + Q(kite) + " && cp " + Q(image) + " " + Q(qemu));
    auto q = Shell("(qemu-img amend -o " + std::string(o) + " " + Q(qemu) + " 2>&1)");
    auto k = Kite({"amend", "-o", o, kite});
    EXPECT_EQ(q.code, 1) << o;
    EXPECT_EQ(k.code, 1) << o;
    EXPECT_EQ(k.err, AsKite(q.out)) << o;
    EXPECT_EQ(ReadFile(kite), ReadFile(image)) << o;
  }
}

TEST(ImgExtendedL2, Convert_ToExtended_QemuAgrees) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string raw = dir.File("src.raw");
  Qemu("qemu-img create -f raw " + Q(raw) + " 4M");
  Qemu("qemu-io -f raw -c 'write -P 0x33 0 1M' -c 'write -P 0x44 2M 70k' -c 'write -P 5 3M 1' " +
       Q(raw));
  for (bool compress : {false, true}) {
    std::string out = dir.File(compress ? "c.qcow2" : "p.qcow2");
    std::vector<std::string> args = {"convert", "-O", "qcow2", "-o", "extended_l2=on"};
    if (compress) args.push_back("-c");
    args.insert(args.end(), {raw, out});
    auto k = Kite(args);
    ASSERT_EQ(k.code, 0) << k.err;
    EXPECT_EQ(Shell("qemu-img check " + Q(out)).code, 0) << out;
    EXPECT_EQ(Shell("qemu-img compare -f raw -F qcow2 " + Q(raw) + " " + Q(out)).code, 0) << out;
    Json q = Json::parse(Shell("qemu-img info --output=json " + Q(out)).out);
    EXPECT_EQ(q["format-specific"]["data"]["extended-l2"], true);
    auto check = Kite({"check", out});
    EXPECT_EQ(check.code, 0) << check.out << check.err;
  }
}

TEST(ImgExtendedL2, Check_QemuWrittenSubclusters_Clean) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string p = dir.File("e.qcow2");
  Qemu("qemu-img create -f qcow2 -o extended_l2=on " + Q(p) + " 4M");
  Qemu("qemu-io -c 'write -P 1 4k 4k' -c 'write -z 8k 2k' -c 'write -P 2 1M 64k' " + Q(p));
  auto k = Kite({"check", p});
  EXPECT_EQ(k.code, 0) << k.out << k.err;
  EXPECT_EQ(k.out, Shell("qemu-img check " + Q(p)).out);
}

TEST(ImgExtendedL2, Measure_SameFiguresAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  for (const char* o : {"extended_l2=on", "extended_l2=on,cluster_size=16k"}) {
    auto k = Kite({"measure", "-O", "qcow2", "-o", o, "--size", "1G"});
    ASSERT_EQ(k.code, 0) << k.err;
    EXPECT_EQ(k.out, Shell("qemu-img measure -O qcow2 -o " + std::string(o) + " --size 1G").out);
  }
}

}  // namespace
}  // namespace kite::img
