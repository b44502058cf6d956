// F3 (BAD_INPUTS 6.6): EIO on qcow2 metadata. A qcow2 image written by qemu-io sits on a
// device-mapper device (dm_device.h) whose `error` segment covers one metadata cluster: the L2
// table, or the refcount block. Requests that need that cluster fail (EIO, naming the image),
// nothing crashes, requests that do not need it keep working, the corrupt bit is NOT set (an I/O
// error is not an inconsistency), and `qemu-img check` afterwards exits 0 or 3.
//
// Label fault: root + device-mapper (scripts/test.sh's nested VM); qemu-img/qemu-io from
// qemu-utils (skipped without them, failed under CI=true: testing/tool_required.h).
//
// Threads: the test thread only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include "fault/dm_device.h"
#include "storage/disk_image.h"
#include "testing/kite_process.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using testing::DmDevice;

constexpr uint64_t kCluster = 64 << 10;
constexpr uint64_t kIncompatCorrupt = 1ull << 1;

Result<testing::ProcessResult> Tool(std::vector<std::string> argv) {
  testing::ProcessOptions options;
  options.argv = std::move(argv);
  return testing::RunProcess(options);
}

// Big-endian u64 at `offset` of the file.
uint64_t ReadBe64(const std::string& path, uint64_t offset) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  unsigned char b[8] = {};
  in.read(reinterpret_cast<char*>(b), 8);
  uint64_t v = 0;
  for (unsigned char c : b) v = (v << 8) | c;
  return v;
}

// Where the first L2 table and the first refcount block live (qcow2 spec offsets).
struct Layout {
  uint64_t l2 = 0;
  uint64_t refblock = 0;
};
Layout ReadLayout(const std::string& path) {
  constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;
  Layout layout;
  layout.l2 = ReadBe64(path, ReadBe64(path, 40)) & kOffsetMask;        // L1[0]
  layout.refblock = ReadBe64(path, ReadBe64(path, 48)) & kOffsetMask;  // refcount table[0]
  return layout;
}

enum class BadCluster { kL2, kRefblock };
const char* ClusterName(BadCluster c) {
  return c == BadCluster::kL2 ? "L2" : "Refblock";
}
void PrintTo(BadCluster c, std::ostream* os) {
  *os << ClusterName(c);
}  // ctest names

class Qcow2Fault : public ::testing::TestWithParam<BadCluster> {
 protected:
  void SetUp() override {
    KITE_REQUIRE_DEVICE_MAPPER();
    KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
    qemu_img_ = kite::testing::FindTool("qemu-img");
    path_ = dir_.File("disk.qcow2");
    auto created = Tool({qemu_img_, "create", "-q", "-f", "qcow2", "-o",
                         "cluster_size=" + std::to_string(kCluster), path_, "16M"});
    ASSERT_TRUE(created && created->exit_status == 0) << (created ? created->Describe() : "");
    auto written = Tool(
        {kite::testing::FindTool("qemu-io"), "-f", "qcow2", "-c", "write -q -P 0x11 0 64k", path_});
    ASSERT_TRUE(written && written->exit_status == 0) << (written ? written->Describe() : "");
    // A block device holding a qcow2 image is larger than the image: room for new clusters.
    std::filesystem::resize_file(path_, 4 << 20);
    layout_ = ReadLayout(path_);
    ASSERT_NE(layout_.l2, 0u);
    ASSERT_NE(layout_.refblock, 0u);
  }

  uint64_t bad_offset() const {
    return GetParam() == BadCluster::kL2 ? layout_.l2 : layout_.refblock;
  }

  void ExpectEio(const Result<void>& r, const std::string& what) {
    ASSERT_FALSE(r) << what << " succeeded although its metadata cannot be read";
    EXPECT_EQ(r.error().sys_errno(), EIO) << what << ": " << r.error().message();
  }

  // After the test: the image's own file, checked by qemu-img.
  void ExpectCheckClean() {
    auto check = Tool({qemu_img_, "check", "-q", path_});
    ASSERT_TRUE(check && check->exited) << (check ? check->Describe() : "");
    EXPECT_TRUE(check->exit_status == 0 || check->exit_status == 3) << check->Describe();
    EXPECT_EQ(ReadBe64(path_, 72) & kIncompatCorrupt, 0u) << "an I/O error is no corruption";
  }

  testing::TempDir dir_;
  std::string qemu_img_;
  std::string path_;
  Layout layout_;
};

// The metadata cluster fails from the start: kite reads every L2 table and refcount block at
// open (its overlap checks need them), so the open itself fails, cleanly.
TEST_P(Qcow2Fault, F3_MetadataReadEioAtOpen_OpenRefused_CheckClean) {
  {
    auto dev = DmDevice::Create(path_, {{bad_offset(), kCluster}});
    ASSERT_TRUE(dev) << dev.error().message();
    auto opened = OpenImage((*dev)->path(), ImageFormat::kQcow2, OpenOptions{});
    ASSERT_FALSE(opened) << "opened although a metadata cluster cannot be read";
    EXPECT_EQ(opened.error().sys_errno(), EIO) << opened.error().message();
  }
  ExpectCheckClean();
}

// The metadata cluster fails while the image is open (after its table was read and cached):
// an allocating write, which must update it, fails with EIO; reads that need nothing from the
// device's failing range keep working; the image is not marked corrupt.
TEST_P(Qcow2Fault, F3_MetadataWriteEioWhileOpen_WriteFails_ReadsWork_CheckClean) {
  {
    auto dev = DmDevice::Create(path_);
    ASSERT_TRUE(dev) << dev.error().message();
    auto opened = OpenImage((*dev)->path(), ImageFormat::kQcow2, OpenOptions{});
    ASSERT_TRUE(opened) << opened.error().message();
    std::unique_ptr<DiskImage> image = std::move(*opened);
    std::vector<uint8_t> buf(4096), data(kCluster, 0x33);
    ASSERT_TRUE(image->Read(0, buf.data(), buf.size()));
    auto failing = (*dev)->SetErrors({{bad_offset(), kCluster}});
    ASSERT_TRUE(failing) << failing.error().message();
    // Without the page in the page cache, even an 8-byte metadata write must read it first.
    auto dropped = (*dev)->DropCache();
    ASSERT_TRUE(dropped) << dropped.error().message();

    ExpectEio(image->Write(8 << 20, data.data(), data.size()), "an allocating write");
    ExpectEio(image->Write(12 << 20, data.data(), data.size()), "a second allocating write");
    std::fill(buf.begin(), buf.end(), 0);
    auto read = image->Read(0, buf.data(), buf.size());
    ASSERT_TRUE(read) << "the allocated cluster's read needs no failing I/O: "
                      << read.error().message();
    EXPECT_EQ(buf[0], 0x11);
    EXPECT_TRUE(image->Read(4 << 20, buf.data(), buf.size())) << "unallocated: zeros";
    image.reset();  // closed before the device goes away
  }
  ExpectCheckClean();
}

INSTANTIATE_TEST_SUITE_P(Clusters, Qcow2Fault,
                         ::testing::Values(BadCluster::kL2, BadCluster::kRefblock),
                         [](const auto& info) { return ClusterName(info.param); });

}  // namespace
}  // namespace kite::storage
