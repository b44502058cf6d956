// Split virtqueue, well-formed paths: direct and indirect chains, the used ring, interrupt
// suppression (NO_INTERRUPT and event index, with wrap-around), in-flight accounting, Reset.
// The malformed inputs (BAD_INPUTS G1-G15) are in queue_bad_inputs_test.cc.
#include <cstring>

#include "queue_fixture.h"

namespace kite::virtio {
namespace {

using testing::FakeBuffer;

TEST_F(QueueTest, Pop_NotReady_ReturnsEmpty) {
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  EXPECT_FALSE(queue_.ready());
}

TEST_F(QueueTest, Pop_NothingPublished_ReturnsEmpty) {
  Activate();
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
}

TEST_F(QueueTest, Pop_DirectChain_ReadableThenWritableIovecs) {
  Activate();
  uint64_t hdr = driver_.Alloc(16), data = driver_.Alloc(512), status = driver_.Alloc(1);
  uint16_t head = AddAndPop({{hdr, 16, false}, {data, 512, true}, {status, 1, true}});
  EXPECT_EQ(chain_.head(), head);
  ASSERT_EQ(chain_.readable().size(), 1u);
  ASSERT_EQ(chain_.writable().size(), 2u);
  EXPECT_EQ(chain_.readable()[0].iov_base, Host(hdr));
  EXPECT_EQ(chain_.readable()[0].iov_len, 16u);
  EXPECT_EQ(chain_.writable()[0].iov_base, Host(data));
  EXPECT_EQ(chain_.writable()[1].iov_base, Host(status));
  EXPECT_EQ(chain_.readable_bytes(), 16u);
  EXPECT_EQ(chain_.writable_bytes(), 513u);
  EXPECT_EQ(queue_.in_flight(), 1);
}

TEST_F(QueueTest, Pop_IndirectChain_BuffersFromTable) {
  Activate();
  uint64_t a = driver_.Alloc(8), b = driver_.Alloc(100), c = driver_.Alloc(4);
  uint16_t head = driver_.AddIndirectChain({{a, 8, false}, {b, 100, false}, {c, 4, true}});
  driver_.Publish();
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.head(), head);
  ASSERT_EQ(chain_.readable().size(), 2u);
  ASSERT_EQ(chain_.writable().size(), 1u);
  EXPECT_EQ(chain_.readable()[1].iov_base, Host(b));
  EXPECT_EQ(chain_.readable_bytes(), 108u);
  EXPECT_EQ(chain_.writable_bytes(), 4u);
}

TEST_F(QueueTest, Pop_DirectDescriptorsThenIndirect_AllBuffersInOrder) {
  Activate();
  uint64_t hdr = driver_.Alloc(16), data = driver_.Alloc(64), table = driver_.Alloc(16);
  driver_.WriteObj(table, Descriptor{data, 64, kDescFlagWrite, 0});
  driver_.SetDescriptor(0, {hdr, 16, kDescFlagNext, 1});
  driver_.SetDescriptor(1, {table, 16, kDescFlagIndirect, 0});
  driver_.AddAvail(0);
  driver_.Publish();
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.readable_bytes(), 16u);
  ASSERT_EQ(chain_.writable().size(), 1u);
  EXPECT_EQ(chain_.writable()[0].iov_base, Host(data));
}

TEST_F(QueueTest, Pop_ChainOfQueueSizeDescriptors_Accepted) {
  Activate();
  std::vector<FakeBuffer> buffers;
  for (int i = 0; i < 16; ++i) buffers.push_back({driver_.Alloc(8), 8, false});
  AddAndPop(buffers);
  EXPECT_EQ(chain_.readable().size(), 16u);
}

TEST_F(QueueTest, Pop_SeveralPublished_PoppedInAvailOrder) {
  Activate();
  uint64_t buf = driver_.Alloc(8);
  uint16_t h0 = driver_.AddChain({{buf, 8, true}});
  uint16_t h1 = driver_.AddChain({{buf, 8, true}});
  driver_.Publish();
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.head(), h0);
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.head(), h1);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  EXPECT_EQ(queue_.stats().chains, 2u);
}

TEST_F(QueueTest, Pop_ReusedChainObject_KeepsItsStorageOnceWarm) {
  Activate();
  std::vector<FakeBuffer> buffers;
  for (int i = 0; i < 4; ++i) buffers.push_back({driver_.Alloc(8), 8, false});
  uint16_t head = AddAndPop(buffers);
  const iovec* storage = chain_.readable().data();
  queue_.PushUsed(head, 0);
  ASSERT_TRUE(driver_.PopUsed());
  AddAndPop(buffers);
  EXPECT_EQ(chain_.readable().data(), storage);
}

TEST_F(QueueTest, PushUsed_WritesIdAndLen) {
  Activate();
  uint16_t head = AddAndPop({{driver_.Alloc(64), 64, true}});
  queue_.PushUsed(head, 40);
  ExpectUsed(head, 40);
  EXPECT_EQ(driver_.used_idx(), 1);
  EXPECT_EQ(queue_.in_flight(), 0);
}

TEST_F(QueueTest, PushUsed_LenBeyondWritableBytes_Clamped) {
  Activate();
  uint16_t head = AddAndPop({{driver_.Alloc(16), 16, false}, {driver_.Alloc(64), 64, true}});
  queue_.PushUsed(head, 1000);
  ExpectUsed(head, 64);
}

TEST_F(QueueTest, PushUsed_OutOfOrder_UsedRingInCompletionOrder) {
  Activate();
  uint64_t buf = driver_.Alloc(8);
  uint16_t heads[3];
  for (uint16_t& h : heads) h = driver_.AddChain({{buf, 8, true}});
  driver_.Publish();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(queue_.in_flight(), 3);
  queue_.PushUsed(heads[2], 1);
  queue_.PushUsed(heads[0], 2);
  EXPECT_EQ(queue_.in_flight(), 1);
  queue_.PushUsed(heads[1], 3);
  ExpectUsed(heads[2], 1);
  ExpectUsed(heads[0], 2);
  ExpectUsed(heads[1], 3);
  EXPECT_EQ(queue_.in_flight(), 0);
}

TEST_F(QueueTest, PushUsed_HeadNotInFlight_Ignored) {
  Activate();
  uint16_t head = AddAndPop({{driver_.Alloc(8), 8, true}});
  queue_.PushUsed(head, 8);
  queue_.PushUsed(head, 8);  // a second completion of the same chain
  queue_.PushUsed(15, 8);    // never popped
  EXPECT_EQ(driver_.used_idx(), 1);
  EXPECT_EQ(queue_.in_flight(), 0);
}

TEST_F(QueueTest, PushUsed_HeadReusedAfterCompletion_PoppedAgain) {
  Activate();
  uint64_t buf = driver_.Alloc(8);
  uint16_t head = AddAndPop({{buf, 8, true}});
  queue_.PushUsed(head, 0);
  ASSERT_TRUE(driver_.PopUsed());
  EXPECT_EQ(AddAndPop({{buf, 8, true}}), head);  // the fake driver reuses the freed descriptor
  EXPECT_FALSE(queue_.broken());
}

TEST_F(QueueTest, NeedsInterrupt_NothingNew_False) {
  Activate(/*event_idx=*/false);
  EXPECT_FALSE(queue_.NeedsInterrupt());
}

TEST_F(QueueTest, NeedsInterrupt_NoInterruptFlag_Suppressed) {
  Activate(/*event_idx=*/false);
  driver_.SetAvailFlags(kAvailFlagNoInterrupt);
  queue_.PushUsed(AddAndPop({{driver_.Alloc(8), 8, true}}), 0);
  EXPECT_FALSE(queue_.NeedsInterrupt());
  EXPECT_EQ(queue_.stats().suppressed, 1u);
  driver_.SetAvailFlags(0);
  queue_.PushUsed(AddAndPop({{driver_.Alloc(8), 8, true}}), 0);
  EXPECT_TRUE(queue_.NeedsInterrupt());
  EXPECT_EQ(queue_.stats().interrupts, 1u);
}

TEST_F(QueueTest, NeedsInterrupt_EventIdxIgnoresNoInterruptFlag) {
  Activate(/*event_idx=*/true);
  driver_.SetAvailFlags(kAvailFlagNoInterrupt);
  driver_.SetUsedEvent(0);  // "interrupt me once used->idx passes 0"
  queue_.PushUsed(AddAndPop({{driver_.Alloc(8), 8, true}}), 0);
  EXPECT_TRUE(queue_.NeedsInterrupt());
}

// Pushes one chain through and returns NeedsInterrupt() after it.
bool RoundTrip(testing::FakeDriver& driver, Queue& queue, DescriptorChain& chain, uint64_t buf) {
  driver.AddChain({{buf, 8, true}});
  driver.Publish();
  if (queue.Pop(&chain) != Queue::PopResult::kChain) {
    ADD_FAILURE() << "no chain";
    return false;
  }
  queue.PushUsed(chain.head(), 0);
  if (!driver.PopUsed()) ADD_FAILURE() << "no used element";
  return queue.NeedsInterrupt();
}

TEST_F(QueueTest, NeedsInterrupt_UsedEvent_InterruptsOnlyWhenPassed) {
  Activate(/*event_idx=*/true);
  uint64_t buf = driver_.Alloc(8);
  EXPECT_TRUE(RoundTrip(driver_, queue_, chain_, buf));  // first decision: always (used idx 1)
  driver_.SetUsedEvent(2);  // interrupt when used->idx goes from <= 2 to > 2
  EXPECT_FALSE(RoundTrip(driver_, queue_, chain_, buf));  // used idx 2
  EXPECT_TRUE(RoundTrip(driver_, queue_, chain_, buf));   // used idx 3
  EXPECT_FALSE(RoundTrip(driver_, queue_, chain_, buf));  // used idx 4: event 2 already passed
}

TEST_F(QueueTest, NeedsInterrupt_UsedEventPassedWithinBatch_Interrupts) {
  Activate(/*event_idx=*/true);
  uint64_t buf = driver_.Alloc(8);
  EXPECT_TRUE(RoundTrip(driver_, queue_, chain_, buf));  // used idx 1
  driver_.SetUsedEvent(2);
  for (int i = 0; i < 3; ++i) driver_.AddChain({{buf, 8, true}});
  driver_.Publish();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
    queue_.PushUsed(chain_.head(), 0);
  }
  EXPECT_TRUE(queue_.NeedsInterrupt());  // 1 -> 4 crosses 2
}

TEST_F(QueueTest, NeedsInterrupt_UsedEventAcrossIndexWrap_VringNeedEvent) {
  Activate(/*event_idx=*/true);
  uint64_t buf = driver_.Alloc(8);
  // Run the indices up to 65534 with the driver never asking (used_event far behind).
  for (int i = 0; i < 65534; ++i) {
    driver_.SetUsedEvent(static_cast<uint16_t>(i - 1000));
    RoundTrip(driver_, queue_, chain_, buf);
  }
  ASSERT_EQ(driver_.used_idx(), 65534);
  driver_.SetUsedEvent(0);  // interrupt when used->idx passes 0, i.e. wraps to 1
  EXPECT_FALSE(RoundTrip(driver_, queue_, chain_, buf));  // 65535
  EXPECT_FALSE(RoundTrip(driver_, queue_, chain_, buf));  // 0
  EXPECT_TRUE(RoundTrip(driver_, queue_, chain_, buf));   // 1
  EXPECT_FALSE(queue_.broken());
}

TEST_F(QueueTest, Pop_EmptyWithEventIdx_WritesAvailEvent) {
  Activate(/*event_idx=*/true);
  uint64_t buf = driver_.Alloc(8);
  for (int i = 0; i < 3; ++i) driver_.AddChain({{buf, 8, true}});
  driver_.Publish();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  EXPECT_EQ(driver_.avail_event(), 3);
}

TEST_F(QueueTest, Pop_EmptyWithoutEventIdx_LeavesAvailEventAlone) {
  Activate(/*event_idx=*/false);
  driver_.AddChain({{driver_.Alloc(8), 8, true}});
  driver_.Publish();
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  EXPECT_EQ(driver_.avail_event(), 0);
}

TEST_F(QueueTest, Stats_NotificationsCountBatchesNotChains) {
  Activate();
  uint64_t buf = driver_.Alloc(8);
  for (int batch = 0; batch < 2; ++batch) {
    for (int i = 0; i < 2; ++i) driver_.AddChain({{buf, 8, true}});
    driver_.Publish();
    while (queue_.Pop(&chain_) == Queue::PopResult::kChain) queue_.PushUsed(chain_.head(), 0);
    while (driver_.PopUsed()) {
    }
  }
  EXPECT_EQ(queue_.stats().chains, 4u);
  EXPECT_EQ(queue_.stats().notifications, 2u);
}

TEST_F(QueueTest, Reset_BackToInitialState) {
  Activate();
  AddAndPop({{driver_.Alloc(8), 8, true}});
  queue_.Reset();
  EXPECT_FALSE(queue_.ready());
  EXPECT_EQ(queue_.size(), queue_.max_size());
  EXPECT_EQ(queue_.desc_addr(), 0u);
  EXPECT_EQ(queue_.avail_addr(), 0u);
  EXPECT_EQ(queue_.used_addr(), 0u);
  EXPECT_EQ(queue_.in_flight(), 0);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  EXPECT_EQ(queue_.stats().chains, 1u);  // stats are kept
}

TEST_F(QueueTest, Reset_CompletionOfOldChain_NotWritten) {
  Activate();
  uint16_t head = AddAndPop({{driver_.Alloc(8), 8, true}});
  queue_.Reset();
  queue_.PushUsed(head, 8);
  EXPECT_EQ(driver_.used_idx(), 0);
}

TEST(QueueResetTest, Reset_ReactivatedQueue_StartsFromIndexZero) {
  Queue queue(16);
  DescriptorChain chain;
  {
    testing::FakeDriver driver;
    driver.Configure(&queue);
    ASSERT_TRUE(queue.Activate(&driver.memory(), true, true));
    (void)RoundTrip(driver, queue, chain, driver.Alloc(8));  // indices now 1
    queue.Reset();
  }
  // A fresh driver (zeroed rings), as after a guest reset.
  testing::FakeDriver driver;
  driver.Configure(&queue);
  ASSERT_TRUE(queue.Activate(&driver.memory(), true, true));
  uint16_t head = driver.AddChain({{driver.Alloc(8), 8, true}});
  driver.Publish();
  ASSERT_EQ(queue.Pop(&chain), Queue::PopResult::kChain);
  queue.PushUsed(head, 0);
  auto used = driver.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, head);
  EXPECT_EQ(driver.used_idx(), 1);
}

}  // namespace
}  // namespace kite::virtio
