// Large writes allocate whole clusters as one run (Qcow2Image::AllocateRun): refcounts, data,
// then L2, across L2-table and refcount-block boundaries. Reads of clusters that metadata in
// memory shows as zeros are answered inside AsyncDisk::Submit (DiskImage::TryReadNow); reads
// that need the backing file must not be.
#include <gtest/gtest.h>

#include <future>

#include "storage/async_disk.h"
#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

struct RunCase {
  uint32_t cluster;
  int refcount_bits;
};

class AllocRun : public ::testing::TestWithParam<RunCase> {};

// 512-byte clusters: an L2 table maps 64 clusters (32 KiB) and a 16-bit refcount block 256,
// so 1 MiB and 3 MiB writes at odd offsets cross many of both.
TEST_P(AllocRun, LargeWrites_CrossTableBoundaries_QemuAgrees) {
  TempDir dir;
  const uint64_t size = 8 << 20;
  std::string p = dir.File("a.qcow2");
  Qcow2CreateOptions o;
  o.size = size;
  o.cluster_size = GetParam().cluster;
  o.refcount_bits = GetParam().refcount_bits;
  ASSERT_TRUE(CreateQcow2(p, o));
  std::vector<uint8_t> model(size, 0);
  {
    auto img = testing::OpenForTest(p, ImageFormat::kQcow2);
    ASSERT_TRUE(img);
    const std::pair<uint64_t, uint64_t> writes[] = {
        {0, 1 << 20}, {(1 << 20) + 4096 * 3, 3 << 20}, {(6 << 20) + 512, (1 << 20) - 1024}};
    for (auto [off, len] : writes) {
      auto d = testing::Pattern(off, len, static_cast<uint32_t>(off));
      ASSERT_TRUE(img->Write(off, d.data(), d.size()));
      std::copy(d.begin(), d.end(), model.begin() + off);
    }
    ASSERT_TRUE(img->Flush());
    ASSERT_TRUE(testing::ReadAll(*img) == model);
  }
  KITE_REQUIRE_TOOL("qemu-img");
  auto r = testing::Run("qemu-img check '" + p + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(testing::QemuReadAll(p, "qcow2") == model);
}

INSTANTIATE_TEST_SUITE_P(Clusters, AllocRun,
                         ::testing::Values(RunCase{512, 16}, RunCase{512, 1}, RunCase{4096, 64},
                                           RunCase{65536, 16}));

// Reads through AsyncDisk with no executor; returns the result and the bytes.
Result<void> AsyncRead(AsyncDisk& disk, uint64_t off, std::vector<uint8_t>& buf) {
  std::promise<Result<void>> done;
  DiskRequest req;
  req.op = DiskOp::kRead;
  req.offset = off;
  req.iov = {iovec{buf.data(), buf.size()}};
  disk.Submit(std::move(req), [&](Result<void> r) { done.set_value(std::move(r)); });
  return done.get_future().get();
}

TEST(TryReadNow, FreshImage_ReadsZeros) {
  TempDir dir;
  std::string p = dir.File("f.qcow2");
  Qcow2CreateOptions o;
  o.size = 4 << 20;
  ASSERT_TRUE(CreateQcow2(p, o));
  std::shared_ptr<DiskImage> img = testing::OpenForTest(p, ImageFormat::kQcow2);
  AsyncDisk disk(img, {});
  std::vector<uint8_t> buf(1 << 20, 0xee);
  ASSERT_TRUE(AsyncRead(disk, 1 << 20, buf));
  EXPECT_EQ(std::count(buf.begin(), buf.end(), 0), static_cast<long>(buf.size()));
}

TEST(TryReadNow, UnallocatedOverBacking_ReadsBackingData) {
  TempDir dir;
  std::string base = dir.File("base.raw");
  ASSERT_TRUE(CreateRaw(base, 4 << 20, Preallocation::kOff));
  auto b = testing::OpenForTest(base, ImageFormat::kRaw);
  auto data = testing::Pattern(0, 4 << 20, 7);
  ASSERT_TRUE(b->Write(0, data.data(), data.size()));
  b.reset();
  std::string p = dir.File("o.qcow2");
  Qcow2CreateOptions o;
  o.size = 4 << 20;
  o.backing_file = "base.raw";
  o.backing_format = "raw";
  ASSERT_TRUE(CreateQcow2(p, o));
  std::shared_ptr<DiskImage> img = testing::OpenForTest(p, ImageFormat::kQcow2);
  AsyncDisk disk(img, {});
  std::vector<uint8_t> buf(256 << 10);
  ASSERT_TRUE(AsyncRead(disk, 1 << 20, buf));
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + (1 << 20)));
}

}  // namespace
}  // namespace kite::storage
