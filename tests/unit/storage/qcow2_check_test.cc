// CheckQcow2 against qemu-img check: clean images, leaks, too-low refcounts, repair, and
// F1 (disk full during cluster allocation leaves a consistent image).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;
using testing::ReadBe64;

constexpr uint64_t kCluster = 65536;

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("c.qcow2");
    Qcow2CreateOptions o;
    o.size = 4 << 20;
    ASSERT_TRUE(CreateQcow2(path_, o));
    auto img = testing::OpenForTest(path_, ImageFormat::kQcow2);
    auto d = testing::Pattern(0, 3 * kCluster, 1);
    ASSERT_TRUE(img->Write(0, d.data(), d.size()));
  }
  uint64_t RefblockOffset() { return ReadBe64(path_, ReadBe64(path_, 48)); }
  void SetRefcount(uint64_t cluster, uint16_t v) {
    testing::PatchFile(path_, RefblockOffset() + cluster * 2, {uint8_t(v >> 8), uint8_t(v)});
  }
  // qemu-img check's exit code for the image, where qemu-img is installed.
  void ExpectQemuCheck(int exit_code) {
    if (!kite::testing::ToolsOrMarkSkipped({"qemu-img"})) return;
    auto r = testing::Run("qemu-img check '" + path_ + "'");
    EXPECT_EQ(r.exit_code, exit_code) << r.output;
  }

  TempDir dir_;
  std::string path_;
};

TEST_F(CheckTest, CleanImage_NoErrors_MatchesQemu) {
  auto r = CheckQcow2(path_, RepairMode::kNone);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->ExitCode(), 0);
  EXPECT_EQ(r->allocated_clusters, 3u);
  EXPECT_EQ(r->total_clusters, 64u);
  ExpectQemuCheck(0);
}

TEST_F(CheckTest, LeakedCluster_ReportedAndRepaired) {
  uint64_t end = std::filesystem::file_size(path_) / kCluster;
  std::filesystem::resize_file(path_, (end + 2) * kCluster);
  SetRefcount(end + 1, 1);  // a cluster inside the file that nobody uses
  auto r = CheckQcow2(path_, RepairMode::kNone);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->leaks, 1u);
  EXPECT_EQ(r->ExitCode(), 3);
  ExpectQemuCheck(3);
  auto fixed = CheckQcow2(path_, RepairMode::kLeaks);
  ASSERT_TRUE(fixed) << fixed.error().message();
  EXPECT_EQ(fixed->leaks_fixed, 1u);
  EXPECT_EQ(fixed->ExitCode(), 0);
  ExpectQemuCheck(0);
}

TEST_F(CheckTest, RefcountTooLow_CorruptionRepairedWithAll) {
  uint64_t l1 = ReadBe64(path_, 40);
  uint64_t l2 = ReadBe64(path_, l1) & 0x00fffffffffffe00ull;
  uint64_t data = ReadBe64(path_, l2) & 0x00fffffffffffe00ull;
  SetRefcount(data / kCluster, 0);
  auto r = CheckQcow2(path_, RepairMode::kNone);
  ASSERT_TRUE(r);
  EXPECT_GE(r->corruptions, 1u);
  EXPECT_EQ(r->ExitCode(), 2);
  ExpectQemuCheck(2);
  auto leaks_only = CheckQcow2(path_, RepairMode::kLeaks);
  ASSERT_TRUE(leaks_only);
  EXPECT_EQ(leaks_only->ExitCode(), 2);
  auto fixed = CheckQcow2(path_, RepairMode::kAll);
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->ExitCode(), 0);
  ExpectQemuCheck(0);
  auto img = testing::OpenForTest(path_, ImageFormat::kQcow2, true);
  std::vector<uint8_t> back(3 * kCluster);
  ASSERT_TRUE(img->Read(0, back.data(), back.size()));
  EXPECT_EQ(back, testing::Pattern(0, 3 * kCluster, 1));
}

TEST(DiskFull, F1_AllocationFailsWithIoErrorImageConsistent) {
  TempDir dir;
  std::string mnt = dir.File("mnt");
  std::filesystem::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount tmpfs here (needs root): " << std::strerror(errno);
  }
  std::string p = mnt + "/full.qcow2";
  Qcow2CreateOptions o;
  o.size = 64 << 20;
  o.cluster_size = 4096;
  ASSERT_TRUE(CreateQcow2(p, o));
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    auto d = testing::Pattern(0, 4096, 3);
    bool failed = false;
    for (uint64_t off = 0; off < (4 << 20); off += 4096) {
      if (!img->Write(off, d.data(), d.size())) {
        failed = true;
        break;
      }
    }
    EXPECT_TRUE(failed) << "a 1 MiB tmpfs took 4 MiB of data";
  }
  if (kite::testing::ToolsOrMarkSkipped({"qemu-img"})) {
    auto r = testing::Run("qemu-img check '" + p + "'");
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << r.output;
  }
  ::umount2(mnt.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace kite::storage
