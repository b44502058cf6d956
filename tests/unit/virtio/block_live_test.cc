// VirtioBlock's live image replacement (src/virtio/block_live.cc): only while quiesced, the
// new image serves the next requests, the capacity follows it, and a change that leaves no
// usable image turns requests into IOERR instead of a crash.
#include <gtest/gtest.h>

#include "block_test_util.h"

namespace kite::virtio {
namespace {

using testing::BlkReq;
using testing::BlockHarness;
using testing::MemDisk;

constexpr uint64_t kSize = 1 << 20;

uint64_t Capacity(VirtioDevice& dev) {
  uint64_t capacity = 0;
  dev.ReadConfig(0, {reinterpret_cast<uint8_t*>(&capacity), 8});
  return capacity;
}

TEST(VirtioBlockLiveTest, ReplaceImage_NotQuiesced_Refused) {
  auto disk = std::make_shared<MemDisk>(kSize);
  BlockHarness h(disk);
  bool called = false;
  auto r = h.block().ReplaceImage([&](std::shared_ptr<storage::DiskImage>&) -> Result<void> {
    called = true;
    return {};
  });
  EXPECT_FALSE(r.has_value());
  EXPECT_FALSE(called);
  EXPECT_EQ(h.block().image(), disk);
}

TEST(VirtioBlockLiveTest, ReplaceImage_NextRequestsGoToTheNewImage_CapacityFollows) {
  auto old_disk = std::make_shared<MemDisk>(kSize);
  auto new_disk = std::make_shared<MemDisk>(2 * kSize);
  BlockHarness h(old_disk);
  BlkReq first = h.Write(0, std::vector<uint8_t>(512, 0xaa));
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(first), blk::kStatusOk);

  ASSERT_TRUE(h.device().Quiesce().has_value());
  long uses_during_change = -1;
  auto replaced =
      h.block().ReplaceImage([&](std::shared_ptr<storage::DiskImage>& image) -> Result<void> {
        uses_during_change = image.use_count();  // ours and old_disk: the device let go
        image = new_disk;
        return {};
      });
  ASSERT_TRUE(replaced.has_value()) << replaced.error().message();
  h.device().Unquiesce();
  EXPECT_EQ(uses_during_change, 2);
  EXPECT_EQ(h.block().image(), new_disk);
  EXPECT_EQ(Capacity(h.device()), 2 * kSize / 512);

  BlkReq beyond = h.Write(kSize / 512 + 8, std::vector<uint8_t>(512, 0xbb));
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(beyond), blk::kStatusOk);
  EXPECT_EQ(new_disk->Bytes(kSize + 8 * 512, 1), std::vector<uint8_t>{0xbb});
  EXPECT_EQ(old_disk->writes.load(), 1);
}

TEST(VirtioBlockLiveTest, ReplaceImage_ChangeLeavesNoImage_RequestsFailNoCrash) {
  BlockHarness h(std::make_shared<MemDisk>(kSize));
  ASSERT_TRUE(h.device().Quiesce().has_value());
  auto replaced =
      h.block().ReplaceImage([](std::shared_ptr<storage::DiskImage>& image) -> Result<void> {
        image.reset();
        return Err("could not reopen");
      });
  ASSERT_FALSE(replaced.has_value());
  EXPECT_EQ(replaced.error().message(), "could not reopen");
  h.device().Unquiesce();
  BlkReq r = h.Read(0, 512);
  ASSERT_EQ(h.Complete(1).size(), 1u);
  EXPECT_EQ(h.Status(r), blk::kStatusIoErr);
  EXPECT_EQ(h.block().image(), nullptr);
  EXPECT_NE(h.device().description().find("being replaced"), std::string::npos);
}

TEST(VirtioBlockLiveTest, ReplaceImage_ReadOnlyFlagMustNotChange) {
  BlockHarness h(std::make_shared<MemDisk>(kSize));
  ASSERT_TRUE(h.device().Quiesce().has_value());
  auto replaced =
      h.block().ReplaceImage([](std::shared_ptr<storage::DiskImage>& image) -> Result<void> {
        image = std::make_shared<MemDisk>(kSize, /*read_only=*/true);
        return {};
      });
  h.device().Unquiesce();
  ASSERT_FALSE(replaced.has_value());
  EXPECT_NE(replaced.error().message().find("read-only"), std::string::npos);
}

}  // namespace
}  // namespace kite::virtio
