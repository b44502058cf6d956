// kite-img amend against qemu-img amend as the oracle: the same image amended by both, then
// kite's copy must pass qemu-img check, read like the original (qemu-img compare) and report
// the same qemu-img info fields as qemu's copy; refusals must print qemu-img's message, exit 1
// and leave the file byte-identical.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "img_test_util.h"
#include "storage/disk_image.h"
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

Json QemuInfo(const std::string& path) {
  return Json::parse(Shell("qemu-img info --output=json " + Q(path)).out);
}

// The info fields an amend can change (filename and disk usage aside).
void ExpectSameAmendedInfo(const std::string& kite, const std::string& qemu) {
  Json k = QemuInfo(kite), q = QemuInfo(qemu);
  for (const char* field : {"virtual-size", "cluster-size", "backing-filename",
                            "backing-filename-format", "dirty-flag", "format-specific"}) {
    ASSERT_EQ(k.contains(field), q.contains(field)) << field;
    if (q.contains(field)) {
      EXPECT_EQ(k[field], q[field]) << field;
    }
  }
}

// One image in `dir` made by `setup` (shell commands run in `dir`), copied three times: the
// original, kite's copy and qemu's copy (same directory: relative backing names resolve).
struct Amended {
  Amended(const TempDir& dir, const std::string& setup)
      : orig(dir.File("orig.qcow2")), kite(dir.File("kite.qcow2")), qemu(dir.File("qemu.qcow2")) {
    Qemu("cd " + Q(dir.path()) + " && " + setup);
    Qemu("cp " + Q(orig) + " " + Q(kite) + " && cp " + Q(orig) + " " + Q(qemu));
  }
  // Amends both copies with `options`; both must succeed and agree.
  void Run(const std::string& options) {
    auto k = Kite({"amend", "-o", options, kite});
    ASSERT_EQ(k.code, 0) << k.err;
    EXPECT_EQ(k.out, "");
    Qemu("qemu-img amend -o " + options + " " + Q(qemu));
    EXPECT_EQ(Shell("qemu-img check " + Q(kite)).code, 0);
    EXPECT_EQ(Shell("qemu-img compare " + Q(kite) + " " + Q(qemu)).code, 0);
    ExpectSameAmendedInfo(kite, qemu);
  }
  // Same content as before the amend (amends that keep the size).
  void ExpectContentKept() {
    EXPECT_EQ(Shell("qemu-img compare " + Q(orig) + " " + Q(kite)).code, 0);
  }
  // Each snapshot, applied (by qemu-img) to a copy of kite's image and to one of the original,
  // reads the same, with the same size, and kite's copy stays clean.
  void ExpectSnapshotsKept(const TempDir& dir, const std::vector<std::string>& snapshots) {
    std::string orig_applied = dir.File("orig-applied.qcow2");
    std::string kite_applied = dir.File("kite-applied.qcow2");
    for (const std::string& snap : snapshots) {
      Qemu("cp " + Q(orig) + " " + Q(orig_applied) + " && cp " + Q(kite) + " " + Q(kite_applied));
      Qemu("qemu-img snapshot -a " + snap + " " + Q(orig_applied));
      Qemu("qemu-img snapshot -a " + snap + " " + Q(kite_applied));
      EXPECT_EQ(Shell("qemu-img check " + Q(kite_applied)).code, 0) << snap;
      EXPECT_EQ(QemuInfo(kite_applied)["virtual-size"], QemuInfo(orig_applied)["virtual-size"])
          << snap;
      EXPECT_EQ(Shell("qemu-img compare " + Q(orig_applied) + " " + Q(kite_applied)).code, 0)
          << snap;
    }
  }
  std::string Header(const std::string& path) const { return ReadFile(path).substr(0, 65536); }
  std::string orig, kite, qemu;
};

const char* const kOverlayOnBacking =
    "qemu-img create -f qcow2 base.qcow2 4M && qemu-io -c 'write -P 7 0 4M' base.qcow2 && "
    "qemu-img create -f qcow2 -b base.qcow2 -F qcow2 orig.qcow2 && "
    "qemu-io -c 'write -z 0 64k' -c 'write -P 3 64k 64k' -c 'write -z 64k 64k' "
    "-c 'write -P 4 1M 64k' -c 'write -z -u 1M 64k' -c 'write -P 5 2M 4k' orig.qcow2";

TEST(ImgAmend, Upgrade_V2Overlay_SameHeaderAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 base.qcow2 4M && qemu-io -c 'write -P 7 0 4M' base.qcow2 && "
            "qemu-img create -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 orig.qcow2 && "
            "qemu-io -c 'write -P 3 64k 64k' -c 'write -z 1M 64k' orig.qcow2");
  a.Run("compat=1.1");
  a.ExpectContentKept();
  EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["compat"], "1.1");
  EXPECT_EQ(a.Header(a.kite), a.Header(a.qemu));  // v3 fields, feature table, padding
}

TEST(ImgAmend, Downgrade_ZeroClustersOverBacking_DataClustersAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir, kOverlayOnBacking);
  a.Run("compat=0.10");
  a.ExpectContentKept();
  EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["compat"], "0.10");
  EXPECT_EQ(Shell("qemu-img map --output=json " + Q(a.kite)).out,
            Shell("qemu-img map --output=json " + Q(a.qemu)).out);
  EXPECT_EQ(a.Header(a.kite), a.Header(a.qemu));
}

TEST(ImgAmend, Downgrade_ZeroClustersWithoutBacking_UnallocatedAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 orig.qcow2 4M && "
            "qemu-io -c 'write -P 1 0 128k' -c 'write -z 0 64k' -c 'write -z 1M 64k' "
            "-c 'write -z -u 64k 64k' orig.qcow2");
  a.Run("compat=0.10");
  a.ExpectContentKept();
  EXPECT_EQ(Shell("qemu-img map --output=json " + Q(a.kite)).out,
            Shell("qemu-img map --output=json " + Q(a.qemu)).out);
}

TEST(ImgAmend, Downgrade_LazyRefcountsAndZstd_ClearedAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 -o lazy_refcounts=on,compression_type=zstd orig.qcow2 4M "
            "&& qemu-io -c 'write -P 9 0 200k' orig.qcow2");
  a.Run("compat=0.10");
  a.ExpectContentKept();
  Json data = QemuInfo(a.kite)["format-specific"]["data"];
  EXPECT_EQ(data["compat"], "0.10");
  EXPECT_EQ(data["compression-type"], "zlib");
}

TEST(ImgAmend, Downgrade_SnapshotWithoutZeroClusters_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 orig.qcow2 4M && qemu-io -c 'write -P 1 0 64k' orig.qcow2 && "
            "qemu-img snapshot -c s1 orig.qcow2 && "
            "qemu-io -c 'write -P 2 0 4k' -c 'write -z 1M 64k' orig.qcow2");
  a.Run("compat=0.10");
  a.ExpectContentKept();
}

// Zero clusters (with and without host space) that snapshots share or own: the snapshots'
// L2 tables are expanded too. Each snapshot, applied, must read as it does in the original.
// Not compared with qemu's copy: qemu-img 7.2 zeroes in place a host cluster the active layer
// marks zero while a snapshot still reads its data, so its snapshots change (seen here at
// 128 KiB in s1 and 192 KiB in s2); kite-img gives that layer a new cluster instead.
void DowngradeWithSnapshotZeros(const std::string& backing_setup, const std::string& create) {
  TempDir dir;
  Amended a(dir, backing_setup + create +
                     " && qemu-io -c 'write -P 1 0 256k' -c 'write -z 0 64k' "
                     "-c 'write -z -u 64k 64k' -c 'write -z 1M 64k' orig.qcow2 && "
                     "qemu-img snapshot -c s1 orig.qcow2 && "
                     "qemu-io -c 'write -P 2 0 4k' -c 'write -z 128k 64k' orig.qcow2 && "
                     "qemu-img snapshot -c s2 orig.qcow2 && "
                     "qemu-io -c 'write -P 3 1M 64k' -c 'write -z 192k 64k' orig.qcow2");
  a.Run("compat=0.10");
  a.ExpectContentKept();
  a.ExpectSnapshotsKept(dir, {"s1", "s2"});
}

TEST(ImgAmend, Downgrade_SnapshotZeroClusters_SnapshotsKept) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  DowngradeWithSnapshotZeros("", "qemu-img create -f qcow2 orig.qcow2 4M");
}

TEST(ImgAmend, Downgrade_SnapshotZeroClustersOverBacking_SnapshotsKept) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  DowngradeWithSnapshotZeros(
      "qemu-img create -f qcow2 base.qcow2 4M && qemu-io -c 'write -P 7 0 4M' base.qcow2 && ",
      "qemu-img create -f qcow2 -b base.qcow2 -F qcow2 orig.qcow2");
}

TEST(ImgAmend, LazyRefcounts_OnThenOff_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 orig.qcow2 4M && qemu-io -c 'write -P 1 0 1M' orig.qcow2");
  a.Run("lazy_refcounts=on");
  EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["lazy-refcounts"], true);
  a.Run("lazy_refcounts=off");
  EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["lazy-refcounts"], false);
  a.ExpectContentKept();
}

// A crash with lazy refcounts leaves the dirty bit and stale refcounts: amend repairs them
// (the read-write open) before turning lazy refcounts off, as qemu-img does.
TEST(ImgAmend, LazyRefcountsOff_DirtyImage_RepairedFirst) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 -o lazy_refcounts=on orig.qcow2 4M && "
            "(qemu-io -c 'write -P 6 0 256k' -c abort orig.qcow2 || true)");
  ASSERT_EQ(QemuInfo(a.orig)["dirty-flag"], true);
  a.Run("lazy_refcounts=off");
  EXPECT_EQ(QemuInfo(a.kite)["dirty-flag"], false);
  EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["lazy-refcounts"], false);
}

TEST(ImgAmend, Upgrade_WithLazyRefcountsAndGrow_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 -o compat=0.10 orig.qcow2 4M && "
            "qemu-io -c 'write -P 1 3M 1M' orig.qcow2");
  a.Run("compat=1.1,lazy_refcounts=on,size=3G");
  EXPECT_EQ(QemuInfo(a.kite)["virtual-size"], 3ull << 30);
  EXPECT_EQ(a.Header(a.kite), a.Header(a.qemu));
}

TEST(ImgAmend, Size_ShrinkDropsDataPastTheEnd_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 orig.qcow2 4M && "
            "qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 3M 64k' orig.qcow2");
  a.Run("size=1M");
  EXPECT_EQ(QemuInfo(a.kite)["virtual-size"], 1 << 20);
}

// New refcount structures of another width; the snapshot gives clusters a refcount of 2.
TEST(ImgAmend, RefcountBits_WidenThenNarrow_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 orig.qcow2 4M && qemu-io -c 'write -P 1 0 1M' orig.qcow2 && "
            "qemu-img snapshot -c s orig.qcow2 && qemu-io -c 'write -P 2 64k 64k' orig.qcow2");
  for (const char* bits : {"64", "2", "8"}) {
    a.Run(std::string("refcount_bits=") + bits);
    EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["refcount-bits"], std::stoi(bits));
    a.ExpectContentKept();
  }
  EXPECT_EQ(Shell("qemu-img snapshot -l " + Q(a.kite)).code, 0);
}

TEST(ImgAmend, RefcountBits_BackTo16WithDowngrade_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 -o refcount_bits=1 orig.qcow2 4M && "
            "qemu-io -c 'write -P 1 0 300k' -c 'write -z 1M 64k' orig.qcow2");
  a.Run("compat=0.10,refcount_bits=16");
  a.ExpectContentKept();
  EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["compat"], "0.10");
}

TEST(ImgAmend, RefcountBits_WithUpgrade_AgreesWithQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 -o compat=0.10,cluster_size=4k orig.qcow2 64M && "
            "qemu-io -c 'write -P 1 0 10M' orig.qcow2");
  a.Run("compat=1.1,refcount_bits=4");
  a.ExpectContentKept();
  EXPECT_EQ(QemuInfo(a.kite)["format-specific"]["data"]["refcount-bits"], 4);
}

TEST(ImgAmend, BackingFile_SameAsStored_Accepted) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir, kOverlayOnBacking);
  a.Run("backing_file=base.qcow2,backing_fmt=qcow2");
  EXPECT_EQ(ReadFile(a.kite), ReadFile(a.orig));
}

// Runs the same refused amend through qemu-img and kite-img on copies of `image`: both exit 1
// with the same message (program name aside), and kite's copy is byte-identical to before.
void ExpectRefusedLikeQemu(const TempDir& dir, const std::string& image,
                           const std::vector<std::string>& args) {
  std::string kite = dir.File("kite-copy"), qemu = dir.File("qemu-copy");
  Qemu("cp " + Q(image) + " " + Q(kite) + " && cp " + Q(image) + " " + Q(qemu));
  std::string cmd = "qemu-img amend";
  for (const std::string& a : args) cmd += " " + Q(a);
  auto q = Shell("(" + cmd + " " + Q(qemu) + " 2>&1)");
  std::vector<std::string> kite_args = {"amend"};
  kite_args.insert(kite_args.end(), args.begin(), args.end());
  kite_args.push_back(kite);
  auto k = Kite(kite_args);
  std::string expected = q.out;
  for (size_t at; (at = expected.find("qemu-img:")) != std::string::npos;) {
    expected.replace(at, 8, "kite-img");
  }
  EXPECT_EQ(q.code, 1) << cmd;
  EXPECT_EQ(k.code, 1) << cmd;
  EXPECT_EQ(k.err, expected) << cmd;
  EXPECT_EQ(ReadFile(kite), ReadFile(image)) << cmd;
}

TEST(ImgAmend, Refused_SameMessageAsQemu_FileUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string v2 = dir.File("v2.qcow2");
  Qemu("qemu-img create -f qcow2 -o compat=0.10 " + Q(v2) + " 4M && qemu-io -c 'write 0 64k' " +
       Q(v2));
  for (const char* o : {"cluster_size=4096",
                        "compression_type=zstd",
                        "extended_l2=on",
                        "preallocation=full",
                        "encryption=on",
                        "encrypt.format=luks",
                        "foo=bar",
                        "compat=2.0",
                        "lazy_refcounts=on",
                        "lazy_refcounts=maybe",
                        "refcount_bits=8",
                        "refcount_bits=3",
                        "refcount_bits=x",
                        "size=1000",
                        "size=abc",
                        "data_file=x.raw",
                        "data_file_raw=on",
                        "encrypt.new-secret=x",
                        "backing_file=x.qcow2",
                        "backing_fmt=raw"}) {
    ExpectRefusedLikeQemu(dir, v2, {"-o", o});
  }
  std::string r8 = dir.File("r8.qcow2");
  Qemu("qemu-img create -f qcow2 -o refcount_bits=8 " + Q(r8) + " 4M");
  ExpectRefusedLikeQemu(dir, r8, {"-o", "compat=0.10"});
  std::string zstd = dir.File("zstd.qcow2");
  Qemu("qemu-img create -f qcow2 -o compression_type=zstd " + Q(zstd) +
       " 4M && qemu-io -c 'write -c 0 64k' " + Q(zstd));
  ExpectRefusedLikeQemu(dir, zstd, {"-o", "compat=0.10"});
  std::string raw = dir.File("r.raw");
  Qemu("qemu-img create -f raw " + Q(raw) + " 1M");
  ExpectRefusedLikeQemu(dir, raw, {"-f", "raw", "-o", "size=2M"});
  std::string v2snap = dir.File("v2snap.qcow2");
  Qemu("qemu-img create -f qcow2 -o compat=0.10 " + Q(v2snap) + " 4M && qemu-img snapshot -c s " +
       Q(v2snap));
  ExpectRefusedLikeQemu(dir, v2snap, {"-o", "size=8M"});
  std::string shared = dir.File("shared.qcow2");
  Qemu("qemu-img create -f qcow2 " + Q(shared) + " 4M && qemu-io -c 'write 0 64k' " + Q(shared) +
       " && qemu-img snapshot -c s " + Q(shared));
  ExpectRefusedLikeQemu(dir, shared, {"-o", "refcount_bits=1"});
}

// An image marked corrupt is not opened read-write, so nothing is amended (qemu-img refuses it
// too, "Image is corrupt; cannot be opened read/write"): exit 1, the file byte-identical.
TEST(ImgAmend, CorruptImage_RefusedFileUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string image = dir.File("c.qcow2");
  Qemu("qemu-img create -q -f qcow2 " + Q(image) + " 4M && qemu-io -c 'write 0 64k' " + Q(image));
  Qemu("printf '\\000\\000\\000\\000\\000\\000\\000\\002' | dd of=" + Q(image) +
       " bs=1 seek=72 conv=notrunc status=none");  // incompatible bits: corrupt
  std::string before = ReadFile(image);
  EXPECT_EQ(Shell("qemu-img amend -o lazy_refcounts=on " + Q(image)).code, 1);
  for (const char* o : {"lazy_refcounts=on", "compat=0.10", "refcount_bits=8", "size=8M"}) {
    auto k = Kite({"amend", "-o", o, image});
    EXPECT_EQ(k.code, 1) << o;
    EXPECT_NE(k.err.find("corrupt; cannot be opened read/write"), std::string::npos) << k.err;
    EXPECT_EQ(ReadFile(image), before) << o;
  }
}

// Only the active layer shrinks: each snapshot, applied, has its old size and content back.
TEST(ImgAmend, Size_ShrinkWithSnapshots_SnapshotsKept) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  Amended a(dir,
            "qemu-img create -f qcow2 orig.qcow2 4M && qemu-io -c 'write -P 1 0 4M' orig.qcow2 && "
            "qemu-img snapshot -c s1 orig.qcow2 && "
            "qemu-io -c 'write -P 2 0 64k' -c 'write -P 3 2M 64k' -c 'write -z 3M 64k' "
            "orig.qcow2 && qemu-img snapshot -c s2 orig.qcow2 && "
            "qemu-io -c 'write -P 4 1M 1M' orig.qcow2");
  a.Run("size=1536k");
  a.ExpectSnapshotsKept(dir, {"s1", "s2"});
}

// The image is opened read-write with its lock: an image in use (here open for writing
// in-process, as a running VM holds it) is refused and left alone.
TEST(ImgAmend, ImageInUse_RefusedByTheLock) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string path = dir.File("a.qcow2");
  Qemu("qemu-img create -f qcow2 " + Q(path) + " 4M");
  std::string before = ReadFile(path);
  storage::OpenOptions options;
  options.open_backing = false;
  auto in_use = storage::OpenImage(path, storage::ImageFormat::kQcow2, options);
  ASSERT_TRUE(in_use) << in_use.error().message();
  auto k = Kite({"amend", "-o", "lazy_refcounts=on", path});
  EXPECT_EQ(k.code, 1);
  EXPECT_NE(k.err.find("Failed to get \"write\" lock"), std::string::npos) << k.err;
  in_use->reset();
  EXPECT_EQ(ReadFile(path), before);
}

TEST(ImgAmend, Help_ListsTheQcow2Options) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string path = dir.File("a.qcow2");
  Qemu("qemu-img create -f qcow2 " + Q(path) + " 4M");
  auto k = Kite({"amend", "-o", "help", path});
  EXPECT_EQ(k.code, 0);
  EXPECT_TRUE(k.out.starts_with("Amend options for 'qcow2':\n")) << k.out;
}

}  // namespace
}  // namespace kite::img
