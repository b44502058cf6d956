// virtio-blk under a rate limit (BAD_INPUTS R1), with a fake clock and timer: requests over the
// limit go back to the ring (nothing dropped, nothing popped twice), one timer is armed for
// exactly when the next may go, N requests take exactly the time the rate gives, flushes cost
// no bytes, a new limit applies at once, and a quiesce with a held-back queue keeps the chain
// in the ring for the snapshot.
#include <gtest/gtest.h>

#include <future>

#include "block_test_util.h"
#include "fake_throttle_time.h"

namespace kite::virtio {
namespace {

using kite::testing::FakeClock;
using kite::testing::FakeTime;
using kite::testing::kMs;
using testing::BlkReq;
using testing::BlockHarness;
using testing::HarnessOptions;
using testing::MemDisk;

HarnessOptions Throttled(const ThrottleLimits& limits, std::shared_ptr<FakeClock> clock) {
  HarnessOptions o;
  o.block.queue_size = 32;
  o.block.throttle = limits;
  o.block.throttle_time = [clock] { return std::make_unique<FakeTime>(clock); };
  return o;
}

HarnessOptions Throttled(const RateLimitParams& total, std::shared_ptr<FakeClock> clock) {
  return Throttled(ThrottleLimits{total, {}, {}}, std::move(clock));
}

// `rate` operations per second, a bucket of one.
RateLimitParams OpsPerSecond(uint64_t rate) {
  return {.bytes = {}, .ops = {.rate = rate, .capacity = 1, .one_time_burst = 0}};
}

// Collects used entries until `n` arrived or the loop went quiet for a moment.
size_t CollectUsed(BlockHarness& h, size_t n, std::vector<UsedElement>& used) {
  h.RunUntil(
      [&] {
        while (auto u = h.driver().PopUsed()) used.push_back(*u);
        return used.size() >= n;
      },
      200);
  return used.size();
}

TEST(BlockThrottleTest, Iops_OneRequestPerTick_TheRestWaitInTheRing) {
  auto clock = std::make_shared<FakeClock>();
  // 10 operations/s, bucket of 1: one request now, then one every 100 ms.
  BlockHarness h(
      std::make_shared<MemDisk>(1 << 20),
      Throttled({.bytes = {}, .ops = {.rate = 10, .capacity = 1, .one_time_burst = 0}}, clock));
  std::vector<BlkReq> reqs;
  for (int i = 0; i < 5; ++i) reqs.push_back(h.Read(i, 512));
  h.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(h, 1, used), 1u);
  EXPECT_EQ(CollectUsed(h, 2, used), 1u);  // no more without time passing
  EXPECT_EQ(h.queue().in_flight(), 0);     // the waiting chain went back to the ring
  EXPECT_EQ(clock->arms, 1);
  EXPECT_EQ(clock->delay, 100 * kMs);
  uint64_t start = clock->now;
  for (size_t n = 2; n <= 5; ++n) {
    clock->Fire();
    EXPECT_EQ(CollectUsed(h, n, used), n);
  }
  // Four waits of exactly 100 ms each; every request completed once, in order.
  EXPECT_EQ(clock->now - start, 400 * kMs);
  ASSERT_EQ(used.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(used[i].id, reqs[i].head);
  for (const BlkReq& r : reqs) EXPECT_EQ(h.Status(r), blk::kStatusOk);
  EXPECT_EQ(h.device().counters().requests, 5u);  // never counted twice
  EXPECT_EQ(h.device().counters().throttled, 4u);
  EXPECT_TRUE(h.broken().empty());
}

TEST(BlockThrottleTest, Bps_TimeFollowsTheBytes) {
  auto clock = std::make_shared<FakeClock>();
  // 40 KiB/s with a 4 KiB bucket: each 4 KiB read after the first waits 100 ms, an 8 KiB one
  // (larger than the bucket) waits for a full bucket, then the next one pays its debt.
  BlockHarness h(
      std::make_shared<MemDisk>(1 << 20),
      Throttled({.bytes = {.rate = 40960, .capacity = 4096, .one_time_burst = 0}, .ops = {}},
                clock));
  h.Read(0, 4096);
  h.Read(8, 4096);
  h.Read(16, 8192);
  h.Read(32, 4096);
  h.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(h, 1, used), 1u);
  EXPECT_EQ(clock->delay, 100 * kMs);
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 2, used), 2u);
  EXPECT_EQ(clock->delay, 100 * kMs);  // the 8 KiB read: a full bucket (4 KiB) lets it go
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 3, used), 3u);
  EXPECT_EQ(clock->delay, 200 * kMs);  // the last read: the 4 KiB owed plus its own 4 KiB
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 4, used), 4u);
  EXPECT_EQ(clock->arms, 3);
}

TEST(BlockThrottleTest, ReadLimit_HoldsReadsOnly_WritesAndFlushesGo) {
  auto clock = std::make_shared<FakeClock>();
  // QEMU's iops_rd: one read per second; writes and flushes are not limited.
  BlockHarness h(std::make_shared<MemDisk>(1 << 20),
                 Throttled(ThrottleLimits{{}, OpsPerSecond(1), {}}, clock));
  h.Write(0, std::vector<uint8_t>(512, 1));
  h.Write(1, std::vector<uint8_t>(512, 2));
  h.Flush();
  h.Read(0, 512);
  BlkReq held = h.Read(1, 512);
  h.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(h, 5, used), 4u);  // both writes, the flush, the first read
  EXPECT_EQ(clock->delay, 1000 * kMs);
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 5, used), 5u);
  EXPECT_EQ(used.back().id, held.head);
  EXPECT_EQ(h.block().throttle().read, OpsPerSecond(1));
  EXPECT_EQ(h.device().counters().throttled, 1u);
}

TEST(BlockThrottleTest, TotalAndWriteLimits_AWriteWaitsForTheLaterOfTheTwo) {
  auto clock = std::make_shared<FakeClock>();
  // Total: 20 operations/s (an operation every 50 ms); writes alone: 40 KiB/s with a 4 KiB
  // bucket (4 KiB every 100 ms). A write waits for the later of its two buckets; a read only
  // for the total's; the 8 KiB write's debt is paid by writes only.
  BlockHarness h(
      std::make_shared<MemDisk>(1 << 20),
      Throttled(ThrottleLimits{OpsPerSecond(20),
                               {},
                               {.bytes = {.rate = 40960, .capacity = 4096, .one_time_burst = 0},
                                .ops = {}}},
                clock));
  h.Write(0, std::vector<uint8_t>(4096, 1));
  h.Write(8, std::vector<uint8_t>(4096, 2));
  h.Write(16, std::vector<uint8_t>(8192, 3));
  h.Read(0, 4096);
  h.Write(40, std::vector<uint8_t>(4096, 4));
  h.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(h, 2, used), 1u);
  EXPECT_EQ(clock->delay, 100 * kMs);  // the bytes' 100 ms, not the operation's 50
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 3, used), 2u);
  EXPECT_EQ(clock->delay, 100 * kMs);  // the 8 KiB write: a full bucket lets it go
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 4, used), 3u);
  EXPECT_EQ(clock->delay, 50 * kMs);  // the read: the total's operation only
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 5, used), 4u);
  EXPECT_EQ(clock->delay, 150 * kMs);  // the last write: 2 KiB still owed plus its own 4 KiB
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 5, used), 5u);
  EXPECT_TRUE(h.broken().empty());
}

TEST(BlockThrottleTest, Flush_CostsAnOperationButNoBytes) {
  auto clock = std::make_shared<FakeClock>();
  BlockHarness h(
      std::make_shared<MemDisk>(1 << 20),
      Throttled({.bytes = {.rate = 1, .capacity = 1, .one_time_burst = 0}, .ops = {}}, clock));
  for (int i = 0; i < 4; ++i) h.Flush();
  std::vector<UsedElement> used = h.Complete(4);
  EXPECT_EQ(used.size(), 4u);
  EXPECT_EQ(clock->arms, 0);
}

TEST(BlockThrottleTest, OneTimeBurst_LetsTheFirstRequestsThrough) {
  auto clock = std::make_shared<FakeClock>();
  BlockHarness h(
      std::make_shared<MemDisk>(1 << 20),
      Throttled({.bytes = {}, .ops = {.rate = 1, .capacity = 1, .one_time_burst = 3}}, clock));
  for (int i = 0; i < 6; ++i) h.Read(i, 512);
  h.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(h, 4, used), 4u);  // 3 from the burst, 1 from the bucket
  EXPECT_EQ(CollectUsed(h, 5, used), 4u);
  EXPECT_EQ(clock->delay, 1000 * kMs);
  clock->Fire();
  EXPECT_EQ(CollectUsed(h, 5, used), 5u);
}

TEST(BlockThrottleTest, SetThrottle_Unlimited_ReleasesTheWaitingQueueAtOnce) {
  auto clock = std::make_shared<FakeClock>();
  BlockHarness h(
      std::make_shared<MemDisk>(1 << 20),
      Throttled({.bytes = {}, .ops = {.rate = 1, .capacity = 1, .one_time_burst = 0}}, clock));
  for (int i = 0; i < 4; ++i) h.Read(i, 512);
  h.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(h, 2, used), 1u);
  h.block().SetThrottle({});
  EXPECT_EQ(CollectUsed(h, 4, used), 4u);  // no timer fired
  EXPECT_EQ(h.block().throttle(), ThrottleLimits{});
  // The old timer's wake is refused: nothing breaks when it comes late.
  clock->Fire();
  EXPECT_TRUE(h.broken().empty());
}

// A query right after a change sees it (query-block after block_set_io_throttle), though the
// gate gets the new limits on the loop: nothing runs the loop between the two calls here.
TEST(BlockThrottleTest, SetThrottle_ReportedAtOnce_BeforeTheLoopRuns) {
  auto clock = std::make_shared<FakeClock>();
  BlockHarness h(std::make_shared<MemDisk>(1 << 20), Throttled(ThrottleLimits{}, clock));
  const ThrottleLimits limits{{}, {}, OpsPerSecond(20)};
  h.block().SetThrottle(limits);
  EXPECT_EQ(h.block().throttle(), limits);
  h.RunUntil([] { return false; }, 20);
  EXPECT_EQ(h.block().throttle(), limits);
}

TEST(BlockThrottleTest, SetThrottle_Tighter_AppliesToTheNextRequests) {
  auto clock = std::make_shared<FakeClock>();
  BlockHarness h(std::make_shared<MemDisk>(1 << 20), Throttled(ThrottleLimits{}, clock));
  h.block().SetThrottle(ThrottleLimits{OpsPerSecond(2), {}, {}});
  h.RunUntil([] { return false; }, 20);
  for (int i = 0; i < 3; ++i) h.Read(i, 512);
  h.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(h, 3, used), 1u);
  EXPECT_EQ(clock->delay, 500 * kMs);
}

TEST(BlockThrottleTest, Quiesce_WithAWaitingChain_ItStaysInTheRingForTheSnapshot) {
  auto clock = std::make_shared<FakeClock>();
  BlockHarness h(
      std::make_shared<MemDisk>(1 << 20),
      Throttled({.bytes = {}, .ops = {.rate = 1, .capacity = 1, .one_time_burst = 0}}, clock));
  h.Read(0, 512);
  BlkReq second = h.Read(1, 512);
  h.Kick();
  std::vector<UsedElement> used;
  ASSERT_EQ(CollectUsed(h, 1, used), 1u);
  // Quiesce on another thread while the loop runs (as the control thread does).
  auto quiesced = std::async(std::launch::async, [&] { return h.device().Quiesce(); });
  h.RunUntil(
      [&] { return quiesced.wait_for(std::chrono::seconds(0)) == std::future_status::ready; });
  ASSERT_TRUE(quiesced.get());
  // Nothing in flight: the queue saves, with the waiting chain still available.
  Result<QueueState> saved = h.queue().Save();
  ASSERT_TRUE(saved) << saved.error().message();
  EXPECT_EQ(saved->next_avail, 1);
  clock->Fire();  // the limiter's wake while quiesced pops nothing
  EXPECT_EQ(CollectUsed(h, 2, used), 1u);
  h.device().Unquiesce();
  EXPECT_EQ(CollectUsed(h, 2, used), 2u);
  EXPECT_EQ(used[1].id, second.head);
}

// Throttle groups (QEMU's throttling.group): disks that share one set of limits get the rate
// together, not each. Two disks, each with its own loop and clock, on one group of 1 op/s.
TEST(BlockThrottleGroupTest, TwoDisks_ShareTheGroupsTokens) {
  auto clock_a = std::make_shared<FakeClock>(), clock_b = std::make_shared<FakeClock>();
  auto group =
      std::make_shared<ThrottleBuckets>(ThrottleLimits{OpsPerSecond(1), {}, {}}, clock_a->now);
  HarnessOptions oa = Throttled(ThrottleLimits{}, clock_a),
                 ob = Throttled(ThrottleLimits{}, clock_b);
  oa.block.throttle_group = ob.block.throttle_group = group;
  BlockHarness a(std::make_shared<MemDisk>(1 << 20), oa);
  BlockHarness b(std::make_shared<MemDisk>(1 << 20), ob);
  EXPECT_EQ(a.block().throttle(), (ThrottleLimits{OpsPerSecond(1), {}, {}}));

  a.Read(0, 512);
  a.Kick();
  std::vector<UsedElement> used_a, used_b;
  EXPECT_EQ(CollectUsed(a, 1, used_a), 1u);  // the group's one token
  b.Read(0, 512);
  b.Kick();
  EXPECT_EQ(CollectUsed(b, 1, used_b), 0u) << "b must wait for the token a took";
  EXPECT_EQ(clock_b->delay, 1000 * kMs);
  clock_b->Fire();
  EXPECT_EQ(CollectUsed(b, 1, used_b), 1u);
  EXPECT_TRUE(a.broken().empty());
  EXPECT_TRUE(b.broken().empty());
}

// block_set_io_throttle on one member changes the group's limits: the other member reports
// them, and both take from the new buckets; leaving the group gives a disk its own limits back.
TEST(BlockThrottleGroupTest, SetThrottle_OnOneMember_IsTheGroups_LeavingRestoresOwn) {
  auto clock = std::make_shared<FakeClock>();
  auto group = std::make_shared<ThrottleBuckets>(ThrottleLimits{}, clock->now);
  const ThrottleLimits own{OpsPerSecond(7), {}, {}};
  HarnessOptions oa = Throttled(own, clock), ob = Throttled(ThrottleLimits{}, clock);
  oa.block.throttle_group = ob.block.throttle_group = group;
  BlockHarness a(std::make_shared<MemDisk>(1 << 20), oa);
  BlockHarness b(std::make_shared<MemDisk>(1 << 20), ob);
  const ThrottleLimits limits{{}, {}, OpsPerSecond(20)};
  a.block().SetThrottle(limits);
  EXPECT_EQ(b.block().throttle(), limits);
  EXPECT_EQ(group->limits(), limits);
  a.block().SetThrottleGroup(nullptr);
  EXPECT_EQ(a.block().throttle(), own);
  EXPECT_EQ(b.block().throttle(), limits);
  a.RunUntil([] { return false; }, 20);
  for (int i = 0; i < 2; ++i) a.Read(i, 512);
  a.Kick();
  std::vector<UsedElement> used;
  EXPECT_EQ(CollectUsed(a, 2, used), 1u);         // its own 7 op/s bucket of one
  EXPECT_EQ(clock->delay, (1000 * kMs + 6) / 7);  // rounded up: never early
}

TEST(ThrottleGroupsTest, Join_SameLimitsOrNone_Shares_OtherLimitsRefused) {
  ThrottleGroups groups;
  const ThrottleLimits limits{OpsPerSecond(5), {}, {}};
  auto first = groups.Join("g1", limits);
  ASSERT_TRUE(first.has_value());
  auto same = groups.Join("g1", limits);
  auto none = groups.Join("g1", ThrottleLimits{});
  ASSERT_TRUE(same.has_value() && none.has_value());
  EXPECT_EQ(first->get(), same->get());
  EXPECT_EQ(first->get(), none->get());
  auto other = groups.Join("g1", ThrottleLimits{OpsPerSecond(6), {}, {}});
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().message(),
            "throttle group 'g1' already has other limits: give the same limits, or none to "
            "share the group's");
  auto second = groups.Join("g2", ThrottleLimits{});
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(first->get(), second->get());
  // SetLimits changes an existing group in place (its members see it) or makes a new one.
  const ThrottleLimits tighter{OpsPerSecond(1), {}, {}};
  EXPECT_EQ(groups.SetLimits("g1", tighter).get(), first->get());
  EXPECT_EQ((*first)->limits(), tighter);
  EXPECT_EQ(groups.SetLimits("g3", tighter)->limits(), tighter);
}

}  // namespace
}  // namespace kite::virtio
