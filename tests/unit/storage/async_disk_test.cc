// AsyncDisk: many requests in flight, completions through an executor, Drain().
#include "storage/async_disk.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

std::shared_ptr<DiskImage> MakeQcow2(TempDir& dir) {
  Qcow2CreateOptions o;
  o.size = 8 << 20;
  EXPECT_TRUE(CreateQcow2(dir.File("a.qcow2"), o));
  return testing::OpenForTest(dir.File("a.qcow2"), ImageFormat::kQcow2);
}

TEST(AsyncDisk, ManyWritesThenReads_AllCompleteWithData) {
  TempDir dir;
  auto image = MakeQcow2(dir);
  AsyncDisk disk(image, AsyncDiskOptions{});
  std::vector<std::vector<uint8_t>> bufs(64);
  std::atomic<int> ok{0};
  for (int i = 0; i < 64; ++i) {
    bufs[i] = testing::Pattern(i * 65536, 65536, 5);
    DiskRequest r;
    r.op = DiskOp::kWrite;
    r.offset = i * 65536ull;
    r.iov = {{bufs[i].data(), 32768}, {bufs[i].data() + 32768, 32768}};
    disk.Submit(std::move(r), [&](Result<void> res) { ok += res.has_value(); });
  }
  disk.Drain();
  EXPECT_EQ(ok.load(), 64);
  EXPECT_EQ(disk.in_flight(), 0u);
  std::vector<uint8_t> back(64 * 65536);
  for (int i = 0; i < 64; ++i) {
    DiskRequest r;
    r.op = DiskOp::kRead;
    r.offset = i * 65536ull;
    r.iov = {{back.data() + i * 65536, 65536}};
    disk.Submit(std::move(r), [&](Result<void> res) { ok += res.has_value(); });
  }
  DiskRequest flush;
  flush.op = DiskOp::kFlush;
  disk.Submit(flush, [&](Result<void> res) { ok += res.has_value(); });
  disk.Drain();
  EXPECT_EQ(ok.load(), 129);
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(std::equal(bufs[i].begin(), bufs[i].end(), back.begin() + i * 65536)) << i;
  }
}

TEST(AsyncDisk, Executor_ReceivesEveryCompletion) {
  TempDir dir;
  auto image = MakeQcow2(dir);
  std::mutex mu;
  std::vector<std::function<void()>> posted;
  AsyncDiskOptions o;
  o.executor = [&](std::function<void()> fn) {
    std::lock_guard lock(mu);
    posted.push_back(std::move(fn));
  };
  AsyncDisk disk(image, o);
  int done = 0;
  for (int i = 0; i < 10; ++i) {
    DiskRequest r;
    r.op = i % 2 ? DiskOp::kDiscard : DiskOp::kWriteZeroes;
    r.offset = i * 4096ull;
    r.length = 4096;
    disk.Submit(r, [&](Result<void> res) { done += res.has_value(); });
  }
  disk.Drain();
  EXPECT_EQ(done, 0);  // nothing runs until the "event loop" runs the posted work
  for (auto& fn : posted) fn();
  EXPECT_EQ(done, 10);
}

TEST(AsyncDisk, BadRequest_CompletesWithError) {
  TempDir dir;
  auto image = MakeQcow2(dir);
  AsyncDisk disk(image, AsyncDiskOptions{});
  std::vector<uint8_t> b(512);
  DiskRequest r;
  r.op = DiskOp::kRead;
  r.offset = 1ull << 40;
  r.iov = {{b.data(), b.size()}};
  std::atomic<int> errors{0};
  disk.Submit(r, [&](Result<void> res) { errors += !res.has_value(); });
  disk.Drain();
  EXPECT_EQ(errors.load(), 1);
}

TEST(AsyncDisk, QueueFull_RefusedNotLost) {
  TempDir dir;
  auto image = MakeQcow2(dir);
  AsyncDiskOptions o;
  o.workers = 1;
  o.max_queued = 2;
  AsyncDisk disk(image, o);
  std::atomic<int> completions{0};
  for (int i = 0; i < 50; ++i) {
    DiskRequest r;
    r.op = DiskOp::kFlush;
    disk.Submit(r, [&](Result<void>) { ++completions; });
  }
  disk.Drain();
  EXPECT_EQ(completions.load(), 50);  // every request completes once, refused or not
}

TEST(AsyncDisk, WorkerCompletions_ReachTheExecutorAsOneBatch) {
  TempDir dir;
  auto image = MakeQcow2(dir);
  std::mutex mu;
  std::vector<std::function<void()>> posted;
  AsyncDiskOptions o;
  o.executor = [&](std::function<void()> fn) {
    std::lock_guard lock(mu);
    posted.push_back(std::move(fn));
  };
  AsyncDisk disk(image, o);
  int done = 0;
  for (int i = 0; i < 20; ++i) {
    DiskRequest r;
    r.op = DiskOp::kFlush;
    disk.Submit(r, [&](Result<void> res) { done += res.has_value(); });
  }
  disk.Drain();
  // The first completion posted a task; the others joined its batch (it has not run yet).
  ASSERT_EQ(posted.size(), 1u);
  posted[0]();
  EXPECT_EQ(done, 20);
  // The batch is open again: the next completion posts a new task.
  DiskRequest r;
  r.op = DiskOp::kFlush;
  disk.Submit(r, [&](Result<void> res) { done += res.has_value(); });
  disk.Drain();
  ASSERT_EQ(posted.size(), 2u);
  posted[1]();
  EXPECT_EQ(done, 21);
}

TEST(AsyncDisk, BatchPostedAfterDiskDestroyed_RunsSafely) {
  TempDir dir;
  auto image = MakeQcow2(dir);
  std::vector<std::function<void()>> posted;
  std::mutex mu;
  AsyncDiskOptions o;
  o.executor = [&](std::function<void()> fn) {
    std::lock_guard lock(mu);
    posted.push_back(std::move(fn));
  };
  int done = 0;
  {
    AsyncDisk disk(image, o);
    DiskRequest r;
    r.op = DiskOp::kFlush;
    disk.Submit(r, [&](Result<void> res) { done += res.has_value(); });
  }  // drained and destroyed; the task is still with the "event loop"
  ASSERT_EQ(posted.size(), 1u);
  posted[0]();
  EXPECT_EQ(done, 1);
}

TEST(AsyncDisk, PluggedPoolRequests_AllCompleteAfterUnplug) {
  TempDir dir;
  auto image = MakeQcow2(dir);
  AsyncDiskOptions o;
  o.workers = 3;
  AsyncDisk disk(image, o);
  std::atomic<int> done{0};
  disk.Plug();
  disk.Plug();  // nests
  for (int i = 0; i < 16; ++i) {
    DiskRequest r;
    r.op = DiskOp::kWriteZeroes;
    r.offset = i * 4096ull;
    r.length = 4096;
    disk.Submit(r, [&](Result<void> res) { done += res.has_value(); });
  }
  disk.Unplug();
  disk.Unplug();
  disk.Drain();
  EXPECT_EQ(done.load(), 16);
}

}  // namespace
}  // namespace kite::storage
