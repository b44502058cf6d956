// Queue::Save / Restore / Unpop (src/virtio/queue_snapshot.cc), driven by the fake driver.
#include <gtest/gtest.h>

#include "queue_fixture.h"

namespace kite::virtio {
namespace {

using testing::FakeBuffer;

class QueueSnapshotTest : public QueueTest {
 protected:
  uint16_t Add() { return driver_.AddChain({{driver_.Alloc(64), 64, true}}); }
  Result<void> RestoreInto(Queue* q, const QueueState& s) {
    return q->Restore(s, &driver_.memory(), true, true);
  }
};

TEST_F(QueueSnapshotTest, Save_ChainInFlight_Refused) {
  Activate();
  AddAndPop({{driver_.Alloc(64), 64, true}});
  EXPECT_FALSE(queue_.Save());
  queue_.PushUsed(chain_.head(), 0);
  EXPECT_TRUE(queue_.Save());
}

TEST_F(QueueSnapshotTest, SaveRestore_RoundTrip_ContinuesIndices) {
  Activate();
  for (int i = 0; i < 3; ++i) {
    uint16_t head = AddAndPop({{driver_.Alloc(64), 64, true}});
    queue_.PushUsed(head, 8);
  }
  (void)queue_.NeedsInterrupt();
  Result<QueueState> saved = queue_.Save();
  ASSERT_TRUE(saved);
  EXPECT_EQ(saved->next_avail, 3);
  EXPECT_EQ(saved->next_used, 3);
  EXPECT_TRUE(saved->signalled_used_valid);
  Queue restored(queue_.max_size());
  ASSERT_TRUE(RestoreInto(&restored, *saved));
  EXPECT_TRUE(restored.ready());
  EXPECT_TRUE(*restored.Save() == *saved);
  uint16_t head = Add();
  driver_.Publish();
  ASSERT_EQ(restored.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.head(), head);
  restored.PushUsed(head, 4);
  EXPECT_EQ(driver_.used_idx(), 4);
}

TEST_F(QueueSnapshotTest, Restore_NotReady_RingsNeverTouched) {
  QueueState s{.max_size = 16,
               .size = 3,
               .desc_addr = driver_.HoleAddr(),
               .avail_addr = 1,
               .used_addr = driver_.EndAddr()};
  ASSERT_TRUE(RestoreInto(&queue_, s));
  EXPECT_FALSE(queue_.ready());
  EXPECT_EQ(queue_.size(), 3);
  EXPECT_EQ(queue_.desc_addr(), driver_.HoleAddr());
  s.next_used = 1;  // indices cannot move while not ready
  Queue other(16);
  EXPECT_FALSE(RestoreInto(&other, s));
}

TEST_F(QueueSnapshotTest, Restore_UsedIdxInMemoryDiffers_Refused) {
  Activate();
  QueueState s = *queue_.Save();
  s.next_avail = s.next_used = 5;  // guest memory still says used->idx = 0
  Queue q(16);
  EXPECT_FALSE(RestoreInto(&q, s));
  EXPECT_FALSE(q.ready());
}

TEST_F(QueueSnapshotTest, Unpop_LastChains_PoppedAgainInOrder) {
  Activate();
  uint16_t a = AddAndPop({{driver_.Alloc(64), 64, true}});
  uint16_t b = AddAndPop({{driver_.Alloc(64), 64, true}});
  uint16_t c = AddAndPop({{driver_.Alloc(64), 64, true}});
  ASSERT_TRUE(queue_.Unpop(2));
  EXPECT_EQ(queue_.in_flight(), 1);
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.head(), b);
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.head(), c);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  queue_.PushUsed(a, 0);
  queue_.PushUsed(b, 0);
  queue_.PushUsed(c, 0);
  EXPECT_EQ(queue_.in_flight(), 0);
}

TEST_F(QueueSnapshotTest, Unpop_UsedChainInTheWay_RefusedNothingChanged) {
  Activate();
  uint16_t a = AddAndPop({{driver_.Alloc(64), 64, true}});
  uint16_t b = AddAndPop({{driver_.Alloc(64), 64, true}});
  queue_.PushUsed(b, 0);
  EXPECT_FALSE(queue_.Unpop(1));  // the last one taken was used already
  EXPECT_EQ(queue_.in_flight(), 1);
  queue_.PushUsed(a, 0);
  EXPECT_EQ(queue_.in_flight(), 0);
}

TEST_F(QueueSnapshotTest, Unpop_MalformedChainInTheWay_Refused) {
  Activate();
  uint16_t a = AddAndPop({{driver_.Alloc(64), 64, true}});
  driver_.AddChain({{driver_.HoleAddr(), 64, true}});  // outside RAM: returned at once
  driver_.Publish();
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  EXPECT_FALSE(queue_.Unpop(1));
  EXPECT_FALSE(queue_.Unpop(2));
  queue_.PushUsed(a, 0);
}

TEST_F(QueueSnapshotTest, Unpop_MoreThanInFlight_Refused) {
  Activate();
  AddAndPop({{driver_.Alloc(64), 64, true}});
  EXPECT_FALSE(queue_.Unpop(2));
  EXPECT_TRUE(queue_.Unpop(1));
  EXPECT_TRUE(queue_.Save());
}

}  // namespace
}  // namespace kite::virtio
