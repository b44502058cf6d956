// JobFilter (storage/job_filter.h): the dirty bitmap, the before-write hook and the chunk locks
// a block job holds against the guest's writes, over a raw image.
#include "storage/job_filter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "storage/raw_image.h"
#include "testing/temp_dir.h"

namespace kite::storage {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kChunk = 64 << 10;

class JobFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string path = dir_.File("disk.raw");
    ASSERT_TRUE(CreateRaw(path, 16 * kChunk, Preallocation::kOff).has_value());
    auto raw = RawImage::Open(path, {});
    ASSERT_TRUE(raw.has_value());
    below_ = std::shared_ptr<DiskImage>(std::move(*raw));
    filter_ = std::make_shared<JobFilter>(below_, kChunk);
  }
  void Write(uint64_t offset, size_t len, uint8_t fill) {
    std::vector<uint8_t> buf(len, fill);
    ASSERT_TRUE(filter_->Write(offset, buf.data(), len).has_value());
  }

  kite::testing::TempDir dir_;
  std::shared_ptr<DiskImage> below_;
  std::shared_ptr<JobFilter> filter_;
};

TEST_F(JobFilterTest, Writes_MarkTheirChunksOnlyWhileTracking) {
  Write(0, 512, 1);
  EXPECT_EQ(filter_->dirty_count(), 0u);
  filter_->set_tracking(true);
  Write(kChunk - 512, 1024, 2);  // straddles chunks 0 and 1
  ASSERT_TRUE(filter_->WriteZeroes(5 * kChunk, kChunk, false).has_value());
  ASSERT_TRUE(filter_->Discard(9 * kChunk + 4096, 4096).has_value());
  EXPECT_EQ(filter_->dirty_count(), 4u);
  EXPECT_EQ(filter_->TakeDirty(2), (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(filter_->TakeDirty(10), (std::vector<uint64_t>{5, 9}));
  EXPECT_EQ(filter_->dirty_count(), 0u);
  EXPECT_TRUE(filter_->TakeDirty(10).empty());
}

TEST_F(JobFilterTest, BeforeWrite_SeesTheOldDataAndCanRefuse) {
  Write(kChunk, kChunk, 0x11);
  uint8_t seen = 0;
  uint64_t first = 99, last = 99;
  filter_->set_before_write([&](uint64_t f, uint64_t l) -> Result<void> {
    first = f, last = l;
    return below_->Read(kChunk + 100, &seen, 1);
  });
  Write(kChunk + 100, 10, 0x22);
  EXPECT_EQ(seen, 0x11);  // the hook ran before the write
  EXPECT_EQ(first, 1u);
  EXPECT_EQ(last, 1u);
  filter_->set_before_write([](uint64_t, uint64_t) -> Result<void> { return Err("no"); });
  std::vector<uint8_t> buf(10, 0x33);
  EXPECT_FALSE(filter_->Write(kChunk + 100, buf.data(), buf.size()).has_value());
  uint8_t now = 0;
  ASSERT_TRUE(below_->Read(kChunk + 100, &now, 1).has_value());
  EXPECT_EQ(now, 0x22);  // a refused hook: nothing written
}

TEST_F(JobFilterTest, ChunkLock_HoldsAGuestWriteToThatChunkOnly) {
  std::atomic<bool> wrote{false};
  std::thread writer;
  {
    JobFilter::ChunkLock hold(filter_.get(), 2, 3);
    Write(0, 4096, 1);  // another chunk: not held
    writer = std::thread([&] {
      Write(3 * kChunk + 8, 8, 7);
      wrote = true;
    });
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(wrote.load());
  }
  writer.join();
  EXPECT_TRUE(wrote.load());
}

TEST_F(JobFilterTest, ForwardsReadsAndHidesTheRawFd) {
  Write(0, 4096, 0x5a);
  uint8_t b = 0;
  ASSERT_TRUE(filter_->Read(10, &b, 1).has_value());
  EXPECT_EQ(b, 0x5a);
  EXPECT_TRUE(below_->raw_fd().has_value());
  EXPECT_FALSE(filter_->raw_fd().has_value());  // every write must pass through the filter
  EXPECT_EQ(filter_->path(), below_->path());
  EXPECT_EQ(filter_->size(), below_->size());
  EXPECT_FALSE(filter_->Write(filter_->size(), &b, 1).has_value());  // past the end: refused
}

}  // namespace
}  // namespace kite::storage
