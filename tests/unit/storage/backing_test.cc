// Backing chains (BAD_INPUTS I14-I18, F6): explicit formats, no protocol names, no special
// files, loops found by inode, a depth limit, and the open fd kept when the file goes away.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

void MakeOverlay(const std::string& path, const std::string& backing, const std::string& fmt,
                 uint64_t size = 1 << 20) {
  Qcow2CreateOptions o;
  o.size = size;
  ASSERT_TRUE(CreateQcow2(path, o));
  if (!backing.empty()) {
    ASSERT_TRUE(SetBackingFile(path, backing, fmt));
  }
}

Error OpenFails(const std::string& path, const OpenOptions& options = OpenOptions{}) {
  auto r = OpenImage(path, ImageFormat::kQcow2, options);
  EXPECT_FALSE(r) << path << " opened";
  return r ? Err("opened") : std::move(r).error();
}

bool Contains(const Error& e, const std::string& needle) {
  return e.message().find(needle) != std::string::npos;
}

TEST(Backing, RelativeName_ResolvedAgainstOverlayDir) {
  TempDir dir;
  ASSERT_TRUE(CreateRaw(dir.File("base.raw"), 1 << 20, Preallocation::kOff));
  auto base = testing::OpenForTest(dir.File("base.raw"), ImageFormat::kRaw);
  std::vector<uint8_t> d(4096, 0x5a);
  ASSERT_TRUE(base->Write(8192, d.data(), d.size()));
  base.reset();
  MakeOverlay(dir.File("top.qcow2"), "base.raw", "raw");
  ASSERT_EQ(::chdir("/"), 0);
  auto top = testing::OpenForTest(dir.File("top.qcow2"), ImageFormat::kQcow2);
  ASSERT_TRUE(top && top->backing());
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(top->Read(8192, back.data(), back.size()));
  EXPECT_EQ(back, d);
  EXPECT_TRUE(top->backing()->read_only());
}

TEST(Backing, I14_JsonName_Refused) {
  TempDir dir;
  MakeOverlay(dir.File("a.qcow2"), "json:{\"file.filename\":\"/etc/shadow\"}", "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "json:"));
}

TEST(Backing, I14_ProtocolName_Refused) {
  TempDir dir;
  MakeOverlay(dir.File("a.qcow2"), "nbd:localhost:10809", "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "protocol"));
}

TEST(Backing, I14_Fifo_RefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.File("fifo").c_str(), 0600), 0);
  MakeOverlay(dir.File("a.qcow2"), "fifo", "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "FIFO"));
}

TEST(Backing, I14_DeviceAndProc_Refused) {
  TempDir dir;
  MakeOverlay(dir.File("a.qcow2"), "/dev/null", "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "character device"));
  MakeOverlay(dir.File("b.qcow2"), "/proc/self/mem", "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("b.qcow2")), "procfs"));
}

TEST(Backing, I14_OutsideRootOrSymlink_Refused) {
  TempDir dir, other;
  ASSERT_TRUE(CreateRaw(other.File("base.raw"), 1 << 20, Preallocation::kOff));
  OpenOptions o;
  o.backing_root = dir.path().string();
  MakeOverlay(dir.File("a.qcow2"), other.File("base.raw"), "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2"), o), "outside"));
  MakeOverlay(dir.File("b.qcow2"), "../" + other.path().filename().string() + "/base.raw", "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("b.qcow2"), o), "outside"));
  ASSERT_EQ(::symlink(other.File("base.raw").c_str(), dir.File("link.raw").c_str()), 0);
  MakeOverlay(dir.File("c.qcow2"), "link.raw", "raw");
  EXPECT_TRUE(Contains(OpenFails(dir.File("c.qcow2"), o), "symbolic link"));
  ASSERT_TRUE(CreateRaw(dir.File("in.raw"), 1 << 20, Preallocation::kOff));
  MakeOverlay(dir.File("d.qcow2"), "in.raw", "raw");
  EXPECT_TRUE(OpenImage(dir.File("d.qcow2"), ImageFormat::kQcow2, o));
}

TEST(Backing, I15_SelfLoop_Refused) {
  TempDir dir;
  MakeOverlay(dir.File("a.qcow2"), "a.qcow2", "qcow2");
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "infinite loop"));
}

TEST(Backing, I15_ThreeLevelLoop_Refused) {
  TempDir dir;
  MakeOverlay(dir.File("a.qcow2"), "b.qcow2", "qcow2");
  MakeOverlay(dir.File("b.qcow2"), "c.qcow2", "qcow2");
  MakeOverlay(dir.File("c.qcow2"), "b.qcow2", "qcow2");
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "infinite loop"));
}

TEST(Backing, I15_LoopThroughHardLink_DetectedByInode) {
  TempDir dir;
  MakeOverlay(dir.File("a.qcow2"), "b.qcow2", "qcow2");
  ASSERT_EQ(::link(dir.File("a.qcow2").c_str(), dir.File("b.qcow2").c_str()), 0);
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "infinite loop"));
}

TEST(Backing, I16_ChainTooDeep_Refused) {
  TempDir dir;
  ASSERT_TRUE(CreateRaw(dir.File("l0"), 1 << 20, Preallocation::kOff));
  for (int i = 1; i <= 11; ++i) {
    MakeOverlay(dir.File(std::string("l").append(std::to_string(i))),
                std::string("l").append(std::to_string(i - 1)), i == 1 ? "raw" : "qcow2");
  }
  OpenOptions o;
  o.max_backing_depth = 10;
  EXPECT_TRUE(Contains(OpenFails(dir.File("l11"), o), "Maximum disk nesting depth exceeded"));
  EXPECT_TRUE(OpenImage(dir.File("l10"), ImageFormat::kQcow2, o));
}

TEST(Backing, I17_NoBackingFormat_RefusedUnlessRawAllowed) {
  TempDir dir;
  ASSERT_TRUE(CreateRaw(dir.File("base.raw"), 1 << 20, Preallocation::kOff));
  MakeOverlay(dir.File("a.qcow2"), "base.raw", "raw");
  // kite writes the backing-format extension first, right after the 112-byte header: turn it
  // into an unknown extension type, so the image names a backing file but no format.
  ASSERT_EQ(testing::ReadBe64(dir.File("a.qcow2"), 112) >> 32, 0xe2792acaull);
  testing::PatchBe32(dir.File("a.qcow2"), 112, 0x12345678);
  auto info = InspectQcow2(dir.File("a.qcow2"));
  ASSERT_TRUE(info);
  ASSERT_TRUE(info->backing_format.empty());
  EXPECT_TRUE(Contains(OpenFails(dir.File("a.qcow2")), "no backing format"));
  OpenOptions o;
  o.allow_unformatted_backing_as_raw = true;
  auto img = OpenImage(dir.File("a.qcow2"), ImageFormat::kQcow2, o);
  ASSERT_TRUE(img);
  EXPECT_EQ((*img)->backing()->format(), ImageFormat::kRaw);
}

TEST(Backing, F6_BackingDeletedWhileOpen_FdKeepsWorking) {
  TempDir dir;
  ASSERT_TRUE(CreateRaw(dir.File("base.raw"), 1 << 20, Preallocation::kOff));
  auto base = testing::OpenForTest(dir.File("base.raw"), ImageFormat::kRaw);
  std::vector<uint8_t> d(512, 0x42);
  ASSERT_TRUE(base->Write(0, d.data(), d.size()));
  base.reset();
  MakeOverlay(dir.File("a.qcow2"), "base.raw", "raw");
  auto top = testing::OpenForTest(dir.File("a.qcow2"), ImageFormat::kQcow2);
  ASSERT_EQ(::unlink(dir.File("base.raw").c_str()), 0);
  std::vector<uint8_t> back(512);
  ASSERT_TRUE(top->Read(0, back.data(), back.size()));
  EXPECT_EQ(back, d);
}

}  // namespace
}  // namespace kite::storage
