// kite-img subcommands against qemu-img as the oracle: the same inputs, the same answers
// (info/map JSON, check exit codes, compare messages, measure figures), and images kite-img
// writes (create, convert, commit, rebase, resize, snapshot) judged by qemu-img check/compare.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "img_test_util.h"
#include "storage/qcow2/qcow2.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::img {
namespace {

using Json = nlohmann::json;
using kite::testing::ReadFile;
using kite::testing::TempDir;
using kite::testing::WriteFile;
using testing::Kite;
using testing::Q;
using testing::Qemu;
using testing::Shell;

// Writes `pattern` bytes at `offset` through qemu-io.
void QemuWrite(const std::string& path, const std::string& fmt, uint64_t offset, uint64_t len,
               int pattern) {
  Qemu("qemu-io -f " + fmt + " -c 'write -P " + std::to_string(pattern) + " " +
       std::to_string(offset) + " " + std::to_string(len) + "' " + Q(path));
}

int QemuCompare(const std::string& a, const std::string& b) {
  return Shell("qemu-img compare " + Q(a) + " " + Q(b)).code;
}

int QemuCheck(const std::string& path) {
  return Shell("qemu-img check " + Q(path)).code;
}

// Sets the 16-bit refcount of host cluster `index` in the first refcount block.
void SetRefcount(const std::string& path, uint64_t index, uint16_t value) {
  std::string f = ReadFile(path);
  uint64_t reftable = 0, refblock = 0;
  std::memcpy(&reftable, f.data() + 48, 8);
  reftable = be64toh(reftable);
  std::memcpy(&refblock, f.data() + reftable, 8);
  refblock = be64toh(refblock);
  uint16_t be = htons(value);
  std::memcpy(f.data() + refblock + index * 2, &be, 2);
  WriteFile(path, f);
}

// A qcow2 base with data and an overlay with more data, made by qemu-img/qemu-io.
struct Chain {
  explicit Chain(const TempDir& dir) : base(dir.File("base.qcow2")), top(dir.File("top.qcow2")) {
    Qemu("qemu-img create -f qcow2 " + Q(base) + " 4M");
    QemuWrite(base, "qcow2", 0, 128 * 1024, 0x11);
    QemuWrite(base, "qcow2", 1 << 20, 64 * 1024, 0x22);
    Qemu("qemu-img create -f qcow2 -b base.qcow2 -F qcow2 " + Q(top));
    QemuWrite(top, "qcow2", 64 * 1024, 4096, 0x33);
    QemuWrite(top, "qcow2", 3 << 20, 100000, 0x44);
  }
  std::string base, top;
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
                                   "format-specific",
                                   "snapshots"};

void ExpectSameInfo(const Json& kite, const Json& qemu) {
  for (const char* field : kInfoFields) {
    ASSERT_EQ(kite.contains(field), qemu.contains(field)) << field;
    if (qemu.contains(field)) {
      EXPECT_EQ(kite[field], qemu[field]) << field;
    }
  }
}

TEST(ImgInfo, Json_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  Qemu("qemu-img snapshot -c snap1 " + Q(chain.base));
  Qemu("qemu-img create -f raw " + Q(dir.File("r.raw")) + " 3M");
  Qemu("qemu-img create -f qcow2 -o compat=0.10,cluster_size=4k " + Q(dir.File("v2.qcow2")) +
       " 1G");
  for (const std::string& path : {chain.base, chain.top, dir.File("r.raw"), dir.File("v2.qcow2")}) {
    auto kite = Kite({"info", "--output=json", path});
    ASSERT_EQ(kite.code, 0) << kite.err;
    auto qemu = Shell("qemu-img info --output=json " + Q(path));
    ASSERT_EQ(qemu.code, 0);
    ExpectSameInfo(Json::parse(kite.out), Json::parse(qemu.out));
  }
}

TEST(ImgInfo, BackingChainJson_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  auto kite = Kite({"info", "--output=json", "--backing-chain", chain.top});
  ASSERT_EQ(kite.code, 0) << kite.err;
  Json k = Json::parse(kite.out);
  Json q = Json::parse(Shell("qemu-img info --output=json --backing-chain " + Q(chain.top)).out);
  ASSERT_EQ(k.size(), q.size());
  for (size_t i = 0; i < k.size(); ++i) ExpectSameInfo(k[i], q[i]);
}

TEST(ImgInfo, HumanText_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  auto kite = Kite({"info", chain.top});
  ASSERT_EQ(kite.code, 0) << kite.err;
  EXPECT_EQ(kite.out, Shell("qemu-img info " + Q(chain.top)).out);
}

// Seen while adding kite-img info to qcow2_image_fuzzer: a snapshot or backing file name that
// is not UTF-8 made the JSON output throw (nlohmann type_error 316) and kite-img abort. Now
// such bytes print as U+FFFD.
TEST(ImgInfo, Json_NamesNotUtf8_PrintedWithReplacementCharacter) {
  TempDir dir;
  std::string path = dir.File("a.qcow2");
  storage::Qcow2CreateOptions create;
  create.size = 1 << 20;
  ASSERT_TRUE(storage::CreateQcow2(path, create));
  ASSERT_TRUE(storage::CreateSnapshot(path, "snap\xff"));
  ASSERT_TRUE(storage::SetBackingFile(path, "base\xfe.raw", "raw"));
  const std::string kFffd = "\xef\xbf\xbd";

  auto info = Kite({"info", "--output=json", "-U", path});
  ASSERT_EQ(info.code, 0) << info.err;
  Json j = Json::parse(info.out);
  EXPECT_EQ(j["snapshots"][0]["name"], "snap" + kFffd);
  EXPECT_EQ(j["backing-filename"], "base" + kFffd + ".raw");

  std::ostringstream out, err;
  Console console{out, err, false};
  SnapshotArgs list;
  list.action = SnapshotArgs::Action::kList;
  list.output = OutputFormat::kJson;
  list.filename = path;
  ASSERT_EQ(RunSnapshot(list, console), 0) << err.str();
  EXPECT_EQ(Json::parse(out.str())[0]["name"], "snap" + kFffd);
}

TEST(ImgCheck, Json_FileNameNotUtf8_PrintedWithReplacementCharacter) {
  TempDir dir;
  std::string path = dir.File("disk\xff.qcow2");
  storage::Qcow2CreateOptions create;
  create.size = 1 << 20;
  ASSERT_TRUE(storage::CreateQcow2(path, create));
  auto check = Kite({"check", "--output=json", path});
  ASSERT_EQ(check.code, 0) << check.err;
  EXPECT_EQ(Json::parse(check.out)["filename"], dir.File("disk\xef\xbf\xbd.qcow2"));
}

TEST(ImgInfo, MissingFile_Fails) {
  TempDir dir;
  auto r = Kite({"info", dir.File("nope")});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("kite-img: "), std::string::npos);
}

TEST(ImgMap, Json_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  Qemu("qemu-io -f qcow2 -c 'write -z 2M 64k' " + Q(chain.top));
  for (const std::string& path : {chain.base, chain.top}) {
    auto kite = Kite({"map", "--output=json", "-f", "qcow2", path});
    ASSERT_EQ(kite.code, 0) << kite.err;
    auto qemu = Shell("qemu-img map --output=json -f qcow2 " + Q(path));
    EXPECT_EQ(Json::parse(kite.out), Json::parse(qemu.out)) << path;
  }
}

TEST(ImgMap, Human_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  auto kite = Kite({"map", "-f", "qcow2", chain.top});
  ASSERT_EQ(kite.code, 0) << kite.err;
  EXPECT_EQ(kite.out, Shell("qemu-img map -f qcow2 " + Q(chain.top)).out);
}

TEST(ImgCheck, Clean_ExitZero) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  auto r = Kite({"check", chain.top});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, Shell("qemu-img check " + Q(chain.top)).out);
}

TEST(ImgCheck, Leak_ExitThreeLikeQemu_RepairedWithRLeaks) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string path = dir.File("l.qcow2");
  Qemu("qemu-img create -f qcow2 " + Q(path) + " 1M");
  uint64_t index = (std::filesystem::file_size(path) + 65535) / 65536;
  std::filesystem::resize_file(path, (index + 1) * 65536);  // a cluster no table refers to
  SetRefcount(path, index, 1);
  ASSERT_EQ(QemuCheck(path), 3);
  EXPECT_EQ(Kite({"check", path}).code, 3);
  auto repaired = Kite({"check", "-r", "leaks", path});
  EXPECT_EQ(repaired.code, 0) << repaired.out << repaired.err;
  EXPECT_EQ(QemuCheck(path), 0);
}

TEST(ImgCheck, Corruption_ExitTwoLikeQemu) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string path = dir.File("c.qcow2");
  Qemu("qemu-img create -f qcow2 " + Q(path) + " 1M");
  SetRefcount(path, 0, 0);  // the header cluster is in use
  ASSERT_EQ(QemuCheck(path), 2);
  EXPECT_EQ(Kite({"check", path}).code, 2);
}

TEST(ImgCheck, Raw_NotSupported63) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  Qemu("qemu-img create -f raw " + Q(dir.File("r")) + " 1M");
  EXPECT_EQ(Kite({"check", "-f", "raw", dir.File("r")}).code, 63);
}

TEST(ImgCreate, Qcow2WithOptions_PassesQemuCheckAndInfo) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string path = dir.File("n.qcow2");
  auto r = Kite({"create", "-f", "qcow2", "-o", "cluster_size=4k,lazy_refcounts=on", path, "10M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(QemuCheck(path), 0);
  Json info = Json::parse(Shell("qemu-img info --output=json " + Q(path)).out);
  EXPECT_EQ(info["virtual-size"], 10 << 20);
  EXPECT_EQ(info["cluster-size"], 4096);
  EXPECT_EQ(info["format-specific"]["data"]["lazy-refcounts"], true);
}

TEST(ImgCreate, OverlaySizeFromBacking) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string path = dir.File("o.qcow2");
  auto r = Kite({"create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(QemuCompare(path, chain.base), 0);
  Json info = Json::parse(Shell("qemu-img info --output=json " + Q(path)).out);
  EXPECT_EQ(info["backing-filename"], "base.qcow2");
  EXPECT_EQ(info["backing-filename-format"], "qcow2");
}

TEST(ImgConvert, Qcow2ChainToRawAndBack_QemuCompareEqual) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string raw = dir.File("flat.raw"), q = dir.File("back.qcow2");
  auto r1 = Kite({"convert", "-O", "raw", chain.top, raw});
  ASSERT_EQ(r1.code, 0) << r1.err;
  EXPECT_EQ(QemuCompare(chain.top, raw), 0);
  auto r2 = Kite({"convert", "-f", "raw", "-O", "qcow2", raw, q});
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_EQ(QemuCompare(raw, q), 0);
  EXPECT_EQ(QemuCheck(q), 0);
}

TEST(ImgConvert, HolesStaySparse) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string raw = dir.File("flat.raw");
  ASSERT_EQ(Kite({"convert", "-O", "raw", chain.top, raw}).code, 0);
  Json k = Json::parse(Shell("qemu-img info --output=json " + Q(raw)).out);
  EXPECT_LT(k["actual-size"].get<uint64_t>(), 1u << 20);  // 4 MiB disk, ~400 KiB of data
}

TEST(ImgConvert, QcowAllocationMatchesQemuConvert) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string ours = dir.File("k.qcow2"), theirs = dir.File("q.qcow2");
  ASSERT_EQ(Kite({"convert", "-O", "qcow2", chain.top, ours}).code, 0);
  Qemu("qemu-img convert -O qcow2 " + Q(chain.top) + " " + Q(theirs));
  auto count = [](const std::string& path) {
    uint64_t data = 0;
    for (const Json& e : Json::parse(Shell("qemu-img map --output=json " + Q(path)).out)) {
      if (e["data"]) data += e["length"].get<uint64_t>();
    }
    return data;
  };
  EXPECT_EQ(count(ours), count(theirs));
}

TEST(ImgConvert, WithBackingFile_OnlyDifferencesWritten) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string out = dir.File("delta.qcow2");
  auto r = Kite({"convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", chain.top, out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(QemuCompare(chain.top, out), 0);
  EXPECT_EQ(QemuCheck(out), 0);
  Json info = Json::parse(Shell("qemu-img info --output=json " + Q(out)).out);
  EXPECT_EQ(info["backing-filename"], "base.qcow2");
}

// A file of `size` bytes, every one `byte`.
void FillFile(const std::string& path, uint64_t size, char byte) {
  WriteFile(path, std::string(size, byte));
}

// Bytes of data (not zero, not holes) qemu-img map reports for `path`.
uint64_t MappedData(const std::string& path) {
  uint64_t data = 0;
  for (const Json& e : Json::parse(Shell("qemu-img map --output=json " + Q(path)).out)) {
    if (e["data"]) data += e["length"].get<uint64_t>();
  }
  return data;
}

TEST(ImgConvert, SkipCreate_RawFullOfOtherData_SameBytesAsQemuImg) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  // 8 MiB of 0x55 behind a 4 MiB disk: the zero ranges must overwrite it, the tail stays.
  std::string ours = dir.File("ours.raw"), theirs = dir.File("theirs.raw");
  FillFile(ours, 8 << 20, 0x55);
  FillFile(theirs, 8 << 20, 0x55);
  auto r = Kite({"convert", "-n", "-O", "raw", chain.top, ours});
  ASSERT_EQ(r.code, 0) << r.err;
  Qemu("qemu-img convert -n -O raw " + Q(chain.top) + " " + Q(theirs));
  EXPECT_TRUE(ReadFile(ours) == ReadFile(theirs));
  std::string flat = dir.File("flat.raw");
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(flat));
  EXPECT_TRUE(ReadFile(ours).substr(0, 4 << 20) == ReadFile(flat));
  EXPECT_EQ(ReadFile(ours).substr(4 << 20), std::string(4 << 20, 0x55));
}

TEST(ImgConvert, SkipCreate_Qcow2WithData_ShowsInputZerosNotStored) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string out = dir.File("out.qcow2");
  Qemu("qemu-img create -f qcow2 " + Q(out) + " 4M");
  QemuWrite(out, "qcow2", 0, 4 << 20, 0x77);
  auto r = Kite({"convert", "-n", "-O", "qcow2", chain.top, out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(QemuCompare(chain.top, out), 0);
  EXPECT_EQ(QemuCheck(out), 0);
  // The input's zero ranges became zero clusters, not 4 MiB of stored zeros.
  EXPECT_LE(MappedData(out), MappedData(chain.top) + (64 << 10));
}

TEST(ImgConvert, SkipCreate_TargetIsZero_ZeroRangesNotWritten_AsQemuImg) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string ours = dir.File("ours.raw"), theirs = dir.File("theirs.raw");
  FillFile(ours, 4 << 20, 0x55);
  FillFile(theirs, 4 << 20, 0x55);
  auto r = Kite({"convert", "-n", "--target-is-zero", "-O", "raw", chain.top, ours});
  ASSERT_EQ(r.code, 0) << r.err;
  Qemu("qemu-img convert -n --target-is-zero -O raw " + Q(chain.top) + " " + Q(theirs));
  // The promise is broken on purpose, to see what is written: the input's data, and no zero
  // range (qemu-img writes the zeros up to the next 4 KiB boundary after data, kite-img stops
  // at the sector: a difference only a broken promise shows).
  std::string got = ReadFile(ours), flat = dir.File("flat.raw");
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(flat));
  std::string want = ReadFile(flat);
  for (uint64_t at : {0u, 64u << 10, 1u << 20, 3u << 20}) {
    EXPECT_TRUE(got.substr(at, 4096) == want.substr(at, 4096)) << at;
  }
  EXPECT_EQ(got[2 << 20], 0x55);               // a zero range of the input: left alone
  EXPECT_EQ(ReadFile(theirs)[2 << 20], 0x55);  // as qemu-img leaves it
}

TEST(ImgConvert, SkipCreate_BadTargets_RefusedNamingTheProblem) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string small = dir.File("small.qcow2"), raw = dir.File("r.raw");
  Qemu("qemu-img create -f qcow2 " + Q(small) + " 2M");
  FillFile(raw, 4 << 20, 0x55);
  std::string before = ReadFile(small);
  auto too_small = Kite({"convert", "-n", "-O", "qcow2", chain.top, small});
  EXPECT_EQ(too_small.code, 1);
  EXPECT_NE(too_small.err.find("output file is smaller than input file"), std::string::npos)
      << too_small.err;
  EXPECT_TRUE(ReadFile(small) == before);
  auto missing = Kite({"convert", "-n", "-O", "raw", chain.top, dir.File("none.raw")});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("none.raw"), std::string::npos) << missing.err;
  auto wrong_format = Kite({"convert", "-n", "-O", "qcow2", chain.top, raw});
  EXPECT_EQ(wrong_format.code, 1);
  EXPECT_NE(wrong_format.err.find("r.raw"), std::string::npos) << wrong_format.err;
  EXPECT_EQ(ReadFile(raw), std::string(4 << 20, 0x55));
}

TEST(ImgConvert, SeveralInputs_Concatenated_EqualsQemuImg_PlainAndCompressed) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);  // 4 MiB qcow2 chain
  // A raw input of 1 MiB + 512 bytes (so that the next input starts inside a cluster), an
  // empty one, and a qcow2 of 1 MiB with data at both ends.
  std::string raw = dir.File("mid.raw"), empty = dir.File("empty.raw"), q = dir.File("end.qcow2");
  Qemu("qemu-img create -f raw " + Q(raw) + " 1049088");
  QemuWrite(raw, "raw", 0, 4096, 0x66);
  QemuWrite(raw, "raw", 1048576, 512, 0x67);
  Qemu("qemu-img create -f raw " + Q(empty) + " 0");
  Qemu("qemu-img create -f qcow2 " + Q(q) + " 1M");
  QemuWrite(q, "qcow2", 0, 512, 0x68);
  QemuWrite(q, "qcow2", (1 << 20) - 4096, 4096, 0x69);
  std::string expected = dir.File("expected.raw");
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(raw) + " " + Q(empty) + " " + Q(q) +
       " " + Q(expected));
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress ? "-c" : "plain");
    std::string out = dir.File(compress ? "c.qcow2" : "p.qcow2");
    std::vector<std::string> args = {"convert", "-O", "qcow2"};
    if (compress) args.push_back("-c");
    for (const std::string& in : {chain.top, raw, empty, q, out}) args.push_back(in);
    auto r = Kite(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(QemuCompare(expected, out), 0);
    EXPECT_EQ(QemuCheck(out), 0);
    Json info = Json::parse(Shell("qemu-img info --output=json " + Q(out)).out);
    EXPECT_EQ(info["virtual-size"].get<uint64_t>(), (4u << 20) + 1049088u + (1u << 20));
  }
}

// --image-opts: the same answers as qemu-img given the same option strings.
TEST(ImgImageOpts, InfoCompareConvert_AsQemuImg) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string top = "driver=qcow2,file.filename=" + chain.top;
  auto kite = Kite({"info", "--output=json", "--image-opts", top});
  ASSERT_EQ(kite.code, 0) << kite.err;
  auto qemu = Shell("qemu-img info --output=json --image-opts " + Q(top));
  ASSERT_EQ(qemu.code, 0) << qemu.err;
  ExpectSameInfo(Json::parse(kite.out), Json::parse(qemu.out));
  // The image read as raw (the driver says so), against qemu-img's answer.
  std::string as_raw = "driver=raw,file.filename=" + chain.top;
  auto raw_info = Kite({"info", "--output=json", "--image-opts", as_raw});
  ASSERT_EQ(raw_info.code, 0) << raw_info.err;
  EXPECT_EQ(Json::parse(raw_info.out)["format"], "raw");
  // Two inputs with their own drivers, into an existing raw output named by its options.
  std::string flat = dir.File("flat.raw"), out = dir.File("out.raw"), expected = dir.File("e.raw");
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(flat));
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(flat) + " " + Q(expected));
  FillFile(out, 8 << 20, 0x55);
  auto r = Kite({"convert", "--image-opts", "-n", "--target-image-opts", top,
                 "driver=raw,file.filename=" + flat, "driver=raw,file.filename=" + out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadFile(out) == ReadFile(expected));
  auto same = Kite({"compare", "--image-opts", top, "driver=raw,file.filename=" + flat});
  EXPECT_EQ(same.code, 0) << same.err;
  auto differ = Kite({"compare", "--image-opts", as_raw, "driver=raw,file.filename=" + flat});
  EXPECT_EQ(differ.code, 1) << differ.err;
}

TEST(ImgCommit, IntoBase_BaseShowsOverlayContent) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string expected = dir.File("expected.raw");
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(expected));
  auto r = Kite({"commit", chain.top});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Image committed.\n");
  EXPECT_EQ(QemuCompare(chain.base, expected), 0);
  EXPECT_EQ(QemuCheck(chain.base), 0);
  EXPECT_EQ(QemuCompare(chain.top, expected), 0);  // emptied overlay reads the base
  EXPECT_EQ(QemuCheck(chain.top), 0);
}

TEST(ImgRebase, Safe_GuestContentUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string other = dir.File("other.qcow2"), expected = dir.File("expected.raw");
  Qemu("qemu-img create -f qcow2 " + Q(other) + " 4M");
  QemuWrite(other, "qcow2", 0, 64 * 1024, 0x55);
  QemuWrite(other, "qcow2", 2 << 20, 64 * 1024, 0x66);
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(expected));
  auto r = Kite({"rebase", "-b", "other.qcow2", "-F", "qcow2", chain.top});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(QemuCompare(chain.top, expected), 0);
  EXPECT_EQ(QemuCheck(chain.top), 0);
  Json info = Json::parse(Shell("qemu-img info --output=json " + Q(chain.top)).out);
  EXPECT_EQ(info["backing-filename"], "other.qcow2");
}

TEST(ImgRebase, Unsafe_OnlyHeaderChanges) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  Qemu("qemu-img create -f qcow2 " + Q(dir.File("other.qcow2")) + " 4M");
  auto r = Kite({"rebase", "-u", "-b", "other.qcow2", "-F", "qcow2", chain.top});
  ASSERT_EQ(r.code, 0) << r.err;
  Json info = Json::parse(Shell("qemu-img info --output=json " + Q(chain.top)).out);
  EXPECT_EQ(info["backing-filename"], "other.qcow2");
  EXPECT_EQ(QemuCheck(chain.top), 0);
  // The overlay's own 0x33 bytes are still there; the rest now comes from the empty base.
  auto q =
      Shell("qemu-io -f qcow2 -c 'read -P 0x33 65536 4096' -c 'read -P 0 0 4096' " + Q(chain.top));
  EXPECT_EQ(q.out.find("Pattern verification failed"), std::string::npos) << q.out;
}

TEST(ImgResize, GrowQcow2_QemuSeesNewSize) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  auto r = Kite({"resize", chain.base, "+1M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Image resized.\n");
  Json info = Json::parse(Shell("qemu-img info --output=json " + Q(chain.base)).out);
  EXPECT_EQ(info["virtual-size"], 5 << 20);
  EXPECT_EQ(QemuCheck(chain.base), 0);
}

TEST(ImgResize, ShrinkWithoutFlag_Refused) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  Qemu("qemu-img create -f raw " + Q(dir.File("r")) + " 2M");
  EXPECT_EQ(Kite({"resize", "-f", "raw", dir.File("r"), "1M"}).code, 1);
  EXPECT_EQ(std::filesystem::file_size(dir.File("r")), 2u << 20);
  EXPECT_EQ(Kite({"resize", "-f", "raw", "--shrink", dir.File("r"), "1M"}).code, 0);
  EXPECT_EQ(std::filesystem::file_size(dir.File("r")), 1u << 20);
}

// As qemu-img: a version 3 image shrinks with snapshots (they keep their size), version 2 not.
TEST(ImgResize, ShrinkWithSnapshots_V3Shrinks_V2Refused) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string v3 = dir.File("v3.qcow2"), v2 = dir.File("v2.qcow2");
  Qemu("qemu-img create -f qcow2 " + Q(v3) + " 4M && qemu-io -c 'write -P 1 0 1M' " + Q(v3) +
       " && qemu-img snapshot -c s " + Q(v3));
  auto r = Kite({"resize", "--shrink", v3, "2M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(QemuCheck(v3), 0);
  Qemu("qemu-img snapshot -a s " + Q(v3));
  EXPECT_EQ(Json::parse(Shell("qemu-img info --output=json " + Q(v3)).out)["virtual-size"],
            4 << 20);
  Qemu("qemu-io -c 'read -P 1 0 1M' " + Q(v3));
  Qemu("qemu-img create -f qcow2 -o compat=0.10 " + Q(v2) + " 4M && qemu-img snapshot -c s " +
       Q(v2));
  std::string before = ReadFile(v2);
  r = Kite({"resize", "--shrink", v2, "2M"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("Can't resize a v2 image which has snapshots"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(v2), before);
}

TEST(ImgSnapshot, CreateApplyDelete_QemuAgrees) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string saved = dir.File("saved.raw");
  Qemu("qemu-img convert -O raw " + Q(chain.base) + " " + Q(saved));
  ASSERT_EQ(Kite({"snapshot", "-c", "before", chain.base}).code, 0);
  EXPECT_NE(Shell("qemu-img snapshot -l " + Q(chain.base)).out.find("before"), std::string::npos);
  QemuWrite(chain.base, "qcow2", 0, 4096, 0x77);
  ASSERT_NE(QemuCompare(chain.base, saved), 0);
  ASSERT_EQ(Kite({"snapshot", "-a", "before", chain.base}).code, 0);
  EXPECT_EQ(QemuCompare(chain.base, saved), 0);
  auto listed = Kite({"snapshot", "-l", chain.base});
  EXPECT_EQ(listed.out, Shell("qemu-img snapshot -l " + Q(chain.base)).out);
  ASSERT_EQ(Kite({"snapshot", "-d", "before", chain.base}).code, 0);
  EXPECT_EQ(Shell("qemu-img snapshot -l " + Q(chain.base)).out, "");
  EXPECT_EQ(QemuCheck(chain.base), 0);
}

TEST(ImgCompare, ExitCodesAndMessages_AgreeWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  std::string flat = dir.File("flat.raw");
  Qemu("qemu-img convert -O raw " + Q(chain.top) + " " + Q(flat));
  auto same = Kite({"compare", chain.top, flat});
  EXPECT_EQ(same.code, 0);
  EXPECT_EQ(same.out, "Images are identical.\n");
  auto differ = Kite({"compare", chain.base, flat});
  auto qemu = Shell("qemu-img compare " + Q(chain.base) + " " + Q(flat));
  EXPECT_EQ(differ.code, 1);
  EXPECT_EQ(differ.out, qemu.out);
  EXPECT_EQ(Kite({"compare", chain.top, dir.File("missing")}).code, 2);
}

TEST(ImgCompare, SizeMismatch_StrictAndTolerant) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  Qemu("qemu-img create -f raw " + Q(dir.File("a")) + " 1M");
  Qemu("qemu-img create -f raw " + Q(dir.File("b")) + " 2M");
  EXPECT_EQ(Kite({"compare", "-f", "raw", "-F", "raw", dir.File("a"), dir.File("b")}).code, 0);
  EXPECT_EQ(Kite({"compare", "-s", "-f", "raw", "-F", "raw", dir.File("a"), dir.File("b")}).code,
            1);
}

TEST(ImgMeasure, AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Chain chain(dir);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--size", "1G", "-O", "qcow2"},
        std::vector<std::string>{"-O", "qcow2", chain.top},
        std::vector<std::string>{"-O", "qcow2", "-o", "cluster_size=4k", chain.base},
        std::vector<std::string>{"-O", "raw", chain.top}}) {
    std::vector<std::string> kite_args{"measure", "--output=json"};
    std::string cmd = "qemu-img measure --output=json";
    for (const std::string& a : args) kite_args.push_back(a), cmd += " ", cmd += Q(a);
    auto kite = Kite(kite_args);
    ASSERT_EQ(kite.code, 0) << kite.err;
    EXPECT_EQ(Json::parse(kite.out), Json::parse(Shell(cmd).out)) << cmd;
  }
}

TEST(ImgBench, ReadAndWrite_Complete) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Qemu("qemu-img create -f qcow2 " + Q(dir.File("b.qcow2")) + " 8M");
  auto w = Kite({"bench", "-w", "-c", "500", "-d", "8", "--pattern=0xa5", "-f", "qcow2",
                 dir.File("b.qcow2")});
  ASSERT_EQ(w.code, 0) << w.err;
  EXPECT_NE(w.out.find("Run completed in "), std::string::npos);
  auto r =
      Kite({"bench", "-c", "500", "-d", "8", "-S", "12288", "-f", "qcow2", dir.File("b.qcow2")});
  ASSERT_EQ(r.code, 0) << r.err;
  // The written pattern is what qemu reads back.
  auto q = Shell("qemu-io -f qcow2 -c 'read -P 0xa5 0 4096' " + Q(dir.File("b.qcow2")));
  EXPECT_EQ(q.out.find("Pattern verification failed"), std::string::npos);
  EXPECT_EQ(QemuCheck(dir.File("b.qcow2")), 0);
}

TEST(ImgVmdk, ConvertToQcow2_EqualsSource) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string src = dir.File("src.raw");
  Qemu("qemu-img create -f raw " + Q(src) + " 3M");
  Qemu("qemu-io -f raw -c 'write -P 0x5a 100000 300000' " + Q(src));
  for (const char* sub : {"monolithicSparse", "streamOptimized"}) {
    std::string vmdk = dir.File(std::string(sub) + ".vmdk"), out = dir.File("out.qcow2");
    Qemu("qemu-img convert -O vmdk -o subformat=" + std::string(sub) + " " + Q(src) + " " +
         Q(vmdk));
    auto r = Kite({"convert", "-f", "vmdk", "-O", "qcow2", vmdk, out});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(QemuCompare(src, out), 0) << sub;
    EXPECT_EQ(QemuCheck(out), 0);
  }
}

}  // namespace
}  // namespace kite::img
