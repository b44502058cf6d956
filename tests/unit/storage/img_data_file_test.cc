// kite-img with qcow2 external data files, against qemu-img as the oracle: create (its
// "Formatting" line and refusals), info, map (the data file as the File column), convert into
// an image with a data file, amend (rename, data_file_raw=off, size, refusals) and resize.
#include <gtest/gtest.h>
#include <sys/stat.h>

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
using testing::Ran;
using testing::Shell;

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_size);
}

Json Info(const std::string& path, bool kite) {
  if (kite) return Json::parse(Kite({"info", "--output=json", path}).out);
  return Json::parse(Shell("qemu-img info --output=json " + Q(path)).out);
}

TEST(ImgDataFile, Create_SameFormattingLineHeaderAndInfoAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string data = dir.File("d.raw");
  for (const std::string& opts : {"data_file=" + data, "data_file=" + data + ",data_file_raw=on"}) {
    std::string k = dir.File("k.qcow2"), q = dir.File("q.qcow2");
    Ran ours = Kite({"create", "-f", "qcow2", "-o", opts, k, "4M"});
    ASSERT_EQ(ours.code, 0) << ours.err;
    std::string theirs = Shell("qemu-img create -f qcow2 -o " + opts + " " + Q(q) + " 4M").out;
    std::string line = ours.out;
    line.replace(line.find(k), k.size(), q);
    EXPECT_EQ(line, theirs);
    Json ki = Info(k, true), qi = Info(q, false);
    EXPECT_EQ(ki["format-specific"], qi["format-specific"]) << opts;
    EXPECT_EQ(Info(k, false)["format-specific"], qi["format-specific"]) << opts;
    EXPECT_EQ(FileSize(data), 4u << 20);
    Ran check = Shell("qemu-img check " + Q(k));
    EXPECT_EQ(check.code, 0) << check.out;
  }
}

TEST(ImgDataFile, Create_RefusalsAsQemu) {
  TempDir dir;
  std::string k = dir.File("k.qcow2");
  auto refused = [&](const std::vector<std::string>& args, const std::string& message) {
    Ran r = Kite(args);
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  };
  refused({"create", "-f", "qcow2", "-o", "data_file_raw=on", k, "1M"},
          "data-file-raw requires data-file");
  refused({"create", "-f", "qcow2", "-o", "compat=0.10,data_file=x.raw", k, "1M"},
          "External data files are only supported with compatibility level 1.1 and above");
  Shell("truncate -s 1M " + Q(dir.File("b.raw")));
  refused({"create", "-f", "qcow2", "-b", "b.raw", "-F", "raw", "-o",
           "data_file=x.raw,data_file_raw=on", k},
          "Backing file and data-file-raw cannot be used at the same time");
}

TEST(ImgDataFile, ConvertInto_MapShowsDataFile_QemuAgrees) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string src = dir.File("src.raw"), out = dir.File("out.qcow2");
  Qemu("qemu-img create -q -f raw " + Q(src) + " 8M");
  Qemu("qemu-io -f raw -c 'write -P 0x3c 0 200k' -c 'write -P 0x11 5M 1M' " + Q(src));
  Ran r = Kite({"convert", "-O", "qcow2", "-o", "data_file=" + dir.File("out.data"), src, out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LT(FileSize(out), 1u << 20) << "guest data went into the qcow2 file";
  EXPECT_EQ(Shell("qemu-img compare -f raw -F qcow2 " + Q(src) + " " + Q(out)).code, 0);
  EXPECT_EQ(Shell("qemu-img check " + Q(out)).code, 0);
  EXPECT_EQ(Kite({"compare", "-f", "raw", "-F", "qcow2", src, out}).code, 0);
  std::string ours = Kite({"map", "--output=json", out}).out;
  std::string theirs = Shell("qemu-img map --output=json " + Q(out)).out;
  EXPECT_EQ(Json::parse(ours), Json::parse(theirs));
  std::string text = Kite({"map", out}).out;
  EXPECT_NE(text.find(dir.File("out.data")), std::string::npos) << text;
}

TEST(ImgDataFile, Amend_AsQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string k = dir.File("k.qcow2"), q = dir.File("q.qcow2");
  for (const std::string& p : {k, q}) {
    std::string data = dir.File(p == k ? "k.data" : "q.data");
    ASSERT_EQ(Kite({"create", "-q", "-f", "qcow2", "-o", "data_file=" + data + ",data_file_raw=on",
                    p, "4M"})
                  .code,
              0);
  }
  ASSERT_EQ(Kite({"amend", "-o", "data_file_raw=off,size=6M", k}).code, 0);
  Qemu("qemu-img amend -o data_file_raw=off,size=6M " + Q(q));
  EXPECT_EQ(Info(k, false)["format-specific"]["data"]["data-file-raw"], false);
  EXPECT_EQ(Info(k, false)["virtual-size"], Info(q, false)["virtual-size"]);
  EXPECT_EQ(FileSize(dir.File("k.data")), FileSize(dir.File("q.data")));
  EXPECT_EQ(FileSize(dir.File("k.data")), 6u << 20);
  ASSERT_EQ(Kite({"amend", "-o", "data_file=" + dir.File("renamed.data"), k}).code, 0);
  EXPECT_EQ(Info(k, false)["format-specific"]["data"]["data-file"], dir.File("renamed.data"));
  std::string before = ReadFile(k);
  for (const auto& [opts, message] : std::vector<std::pair<std::string, std::string>>{
           {"compat=0.10", "Cannot downgrade an image with a data file"},
           {"data_file_raw=on", "data-file-raw cannot be set on existing images"}}) {
    Ran r = Kite({"amend", "-o", opts, k});
    EXPECT_EQ(r.code, 1) << opts;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  EXPECT_TRUE(ReadFile(k) == before) << "a refused amend changed the image";
  Shell("mv " + Q(dir.File("k.data")) + " " + Q(dir.File("renamed.data")));
  EXPECT_EQ(Shell("qemu-img check " + Q(k) + " 2>&1 | grep -c 'No errors'").out, "1\n");
}

TEST(ImgDataFile, Resize_DataFileFollows) {
  TempDir dir;
  std::string k = dir.File("k.qcow2");
  ASSERT_EQ(
      Kite({"create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.File("k.data"), k, "1M"}).code,
      0);
  ASSERT_EQ(Kite({"resize", k, "5M"}).code, 0);
  EXPECT_EQ(FileSize(dir.File("k.data")), 5u << 20);
}

}  // namespace
}  // namespace kite::img
