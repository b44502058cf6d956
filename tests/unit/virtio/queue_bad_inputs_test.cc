// Split virtqueue against a malicious driver: BAD_INPUTS.md G1-G13 and G15, one behaviour per
// test. Policy (queue.h): a malformed chain comes back to the guest with used length 0 and is
// counted in stats().bad_chains; a malformed ring (G3-G5) breaks the queue; a malformed ring
// setup (G12, G13) is refused by Activate.
#include <chrono>
#include <cstring>

#include "queue_fixture.h"

namespace kite::virtio {
namespace {

using testing::FakeBuffer;
using testing::FakeDriver;
using testing::FakeDriverOptions;

// Publishes `head` (descriptors written by the test), pops, and expects the chain to be
// returned unused: Pop yields nothing, used element {head, 0}, bad_chains + 1, not broken.
class BadChainTest : public QueueTest {
 protected:
  explicit BadChainTest(FakeDriverOptions options = {}) : QueueTest(options) {}

  void ExpectRejected(uint16_t head) {
    driver_.AddAvail(head);
    driver_.Publish();
    uint64_t bad_before = queue_.stats().bad_chains;
    EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
    ExpectUsed(head, 0);
    EXPECT_EQ(queue_.stats().bad_chains, bad_before + 1);
    EXPECT_EQ(queue_.in_flight(), 0);
    EXPECT_FALSE(queue_.broken());
  }
  void SetupActive(bool indirect = true) { Activate(/*event_idx=*/true, indirect); }
};

TEST_F(BadChainTest, G1_TwoDescriptorLoop_ReturnedWithLen0) {
  SetupActive();
  uint64_t buf = driver_.Alloc(8);
  driver_.SetDescriptor(0, {buf, 8, kDescFlagNext, 1});
  driver_.SetDescriptor(1, {buf, 8, kDescFlagNext, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G1_SelfLoop_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(3, {driver_.Alloc(8), 8, kDescFlagNext, 3});
  ExpectRejected(3);
}

TEST_F(BadChainTest, G1_LoopOfZeroLengthDescriptors_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {0, 0, kDescFlagNext, 1});
  driver_.SetDescriptor(1, {0, 0, kDescFlagNext, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G1_LoopInsideIndirectTable_ReturnedWithLen0) {
  SetupActive();
  uint64_t buf = driver_.Alloc(8), table = driver_.Alloc(32);
  driver_.WriteObj(table, Descriptor{buf, 8, kDescFlagNext, 1});
  driver_.WriteObj(table + 16, Descriptor{buf, 8, kDescFlagNext, 0});
  driver_.SetDescriptor(0, {table, 32, kDescFlagIndirect, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G1_LoopedChainThenGoodChain_GoodOneStillPopped) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.Alloc(8), 8, kDescFlagNext, 0});
  driver_.SetDescriptor(1, {driver_.Alloc(8), 8, 0, 0});
  driver_.AddAvail(0);
  driver_.AddAvail(1);
  driver_.Publish();
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(chain_.head(), 1);
  ExpectUsed(0, 0);
}

TEST_F(BadChainTest, G2_NextEqualsQueueSize_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.Alloc(8), 8, kDescFlagNext, 16});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G2_NextHuge_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.Alloc(8), 8, kDescFlagNext, 0xffff});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G2_IndirectNextOutsideTable_ReturnedWithLen0) {
  SetupActive();
  uint64_t table = driver_.Alloc(32);
  driver_.WriteObj(table, Descriptor{driver_.Alloc(8), 8, kDescFlagNext, 2});  // 2 entries
  driver_.SetDescriptor(0, {table, 32, kDescFlagIndirect, 0});
  ExpectRejected(0);
}

TEST_F(QueueTest, G3_AvailIdxJumpsBeyondSize_Broken) {
  Activate();
  driver_.SetAvailIdx(17);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);
  EXPECT_TRUE(queue_.broken());
  EXPECT_EQ(driver_.used_idx(), 0);                           // nothing processed
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);  // and stays broken
}

TEST_F(QueueTest, G3_AvailIdxJumpsBackwards_Broken) {
  Activate();
  driver_.SetAvailIdx(0xffff);  // 65535 entries "ahead"
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);
}

TEST_F(QueueTest, G3_PublishedPlusInFlightBeyondSize_Broken) {
  Activate();
  uint64_t buf = driver_.Alloc(8);
  for (int i = 0; i < 10; ++i) driver_.AddChain({{buf, 8, true}});
  driver_.Publish();
  for (int i = 0; i < 10; ++i) ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  driver_.SetAvailIdx(10 + 7);  // 10 in flight + 7 new > 16
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);
}

TEST_F(QueueTest, G3_ExactlyQueueSizePublished_AllPopped) {
  Activate();
  uint64_t buf = driver_.Alloc(8);
  for (int i = 0; i < 16; ++i) driver_.AddChain({{buf, 8, true}});
  driver_.Publish();
  for (int i = 0; i < 16; ++i) ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(queue_.in_flight(), 16);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
}

TEST_F(QueueTest, G4_HeadMadeAvailableTwiceWhileInFlight_Broken) {
  Activate();
  uint16_t head = driver_.AddChain({{driver_.Alloc(8), 8, true}});
  driver_.AddAvail(head);
  driver_.Publish();
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);
  EXPECT_EQ(queue_.in_flight(), 1);
}

TEST_F(QueueTest, G5_HeadEqualsQueueSize_Broken) {
  Activate();
  driver_.AddAvail(16);
  driver_.Publish();
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);
  EXPECT_EQ(driver_.used_idx(), 0);
}

TEST_F(QueueTest, G5_HeadHuge_Broken) {
  Activate();
  driver_.AddAvail(0xffff);
  driver_.Publish();
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);
}

TEST_F(QueueTest, G5_BrokenQueue_ResetRepairsIt) {
  Activate();
  driver_.AddAvail(0xffff);
  driver_.Publish();
  ASSERT_EQ(queue_.Pop(&chain_), Queue::PopResult::kBroken);
  queue_.Reset();
  EXPECT_FALSE(queue_.broken());
}

TEST_F(BadChainTest, G6_AddrPlusLenOverflows_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {0xffff'ffff'ffff'f000ull, 0x2000, 0, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G6_LenAllOnes_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.Alloc(8), 0xffff'ffffu, kDescFlagWrite, 0});
  ExpectRejected(0);
}

TEST_F(QueueTest, G7_ZeroLengthDescriptorInMiddle_Skipped) {
  Activate();
  uint64_t a = driver_.Alloc(16), c = driver_.Alloc(32);
  AddAndPop({{a, 16, false}, {driver_.EndAddr() + 4096, 0, false}, {c, 32, true}});
  ASSERT_EQ(chain_.readable().size(), 1u);
  ASSERT_EQ(chain_.writable().size(), 1u);
  EXPECT_EQ(chain_.readable_bytes(), 16u);
  EXPECT_EQ(chain_.writable()[0].iov_base, Host(c));
}

TEST_F(QueueTest, G7_OnlyZeroLengthDescriptors_EmptyChain) {
  Activate();
  AddAndPop({{0, 0, false}, {0, 0, true}});
  EXPECT_TRUE(chain_.readable().empty());
  EXPECT_TRUE(chain_.writable().empty());
}

TEST_F(BadChainTest, G8_BufferInHole_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.HoleAddr() + 64, 16, 0, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G8_BufferAboveRam_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.EndAddr(), 16, kDescFlagWrite, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G8_BufferRunningPastEndOfRam_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.EndAddr() - 8, 16, kDescFlagWrite, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G8_MmioWindowAddress_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {0xd000'0000ull, 0x100, kDescFlagWrite, 0});  // virtio-mmio slot 0
  ExpectRejected(0);
}

TEST_F(BadChainTest, G9_BufferCrossingIntoHole_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.HoleAddr() - 8, 16, 0, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G9_BufferSpanningBothRegionsAcrossHole_ReturnedWithLen0) {
  SetupActive();
  uint64_t start = driver_.HoleAddr() - 8;
  driver_.SetDescriptor(0, {start, static_cast<uint32_t>(driver_.HighAddr(8) - start), 0, 0});
  ExpectRejected(0);
}

TEST_F(QueueTest, G9_BufferInsideHighRegion_OneIovec) {
  Activate();
  uint64_t addr = driver_.HighAddr(4096);
  AddAndPop({{addr, 8192, true}});
  ASSERT_EQ(chain_.writable().size(), 1u);
  EXPECT_EQ(chain_.writable()[0].iov_base, Host(addr, 8192));
  EXPECT_EQ(chain_.writable()[0].iov_len, 8192u);
}

class AdjacentRegionsTest : public QueueTest {
 protected:
  AdjacentRegionsTest() : QueueTest({.hole_size = 0}) {}
};

TEST_F(AdjacentRegionsTest, G9_BufferAcrossAdjacentRegions_SplitPerRegion) {
  Activate();
  uint64_t start = driver_.HighAddr() - 100;  // 100 bytes in the low region, 50 in the high
  AddAndPop({{start, 150, true}});
  ASSERT_EQ(chain_.writable().size(), 2u);
  EXPECT_EQ(chain_.writable()[0].iov_base, Host(start, 100));
  EXPECT_EQ(chain_.writable()[0].iov_len, 100u);
  EXPECT_EQ(chain_.writable()[1].iov_base, Host(driver_.HighAddr(), 50));
  EXPECT_EQ(chain_.writable()[1].iov_len, 50u);
  EXPECT_EQ(chain_.writable_bytes(), 150u);
}

class BigQueueTest : public BadChainTest {
 protected:
  BigQueueTest() : BadChainTest({.queue_size = 256, .low_size = 32ull << 20}) {}
};

TEST_F(BigQueueTest, G10_256DescriptorsOnOne16MiBBuffer_RejectedByByteCap) {
  SetupActive();
  uint64_t buf = driver_.Alloc(16u << 20);
  for (uint16_t i = 0; i < 256; ++i) {
    driver_.SetDescriptor(
        i, {buf, 16u << 20, kDescFlagWrite | kDescFlagNext, static_cast<uint16_t>(i + 1)});
  }
  driver_.SetDescriptor(255, {buf, 16u << 20, kDescFlagWrite, 0});
  auto start = std::chrono::steady_clock::now();
  ExpectRejected(0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST_F(BigQueueTest, G10_256IndirectDescriptorsOnOne16MiBBuffer_RejectedByByteCap) {
  SetupActive();
  uint64_t buf = driver_.Alloc(16u << 20);
  std::vector<FakeBuffer> buffers(256, FakeBuffer{buf, 16u << 20, true});
  uint16_t head = driver_.AddIndirectChain(buffers);
  driver_.Publish();
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  ExpectUsed(head, 0);
}

TEST_F(BigQueueTest, G10_ExactlyMaxChainBytes_Accepted) {
  SetupActive();
  uint64_t buf = driver_.Alloc(16u << 20);
  static_assert(kMaxChainBytes == 4 * (16u << 20));
  AddAndPop(std::vector<FakeBuffer>(4, FakeBuffer{buf, 16u << 20, true}));
  EXPECT_EQ(chain_.writable_bytes(), kMaxChainBytes);
}

TEST_F(BadChainTest, G11_IndirectInsideIndirect_ReturnedWithLen0) {
  SetupActive();
  uint64_t inner = driver_.Alloc(16), outer = driver_.Alloc(16);
  driver_.WriteObj(inner, Descriptor{driver_.Alloc(8), 8, 0, 0});
  driver_.WriteObj(outer, Descriptor{inner, 16, kDescFlagIndirect, 0});
  driver_.SetDescriptor(0, {outer, 16, kDescFlagIndirect, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G11_IndirectLengthZero_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.Alloc(16), 0, kDescFlagIndirect, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G11_IndirectLengthNotMultipleOf16_ReturnedWithLen0) {
  SetupActive();
  uint64_t table = driver_.Alloc(32);
  driver_.WriteObj(table, Descriptor{driver_.Alloc(8), 8, 0, 0});
  driver_.SetDescriptor(0, {table, 24, kDescFlagIndirect, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G11_IndirectWithNext_ReturnedWithLen0) {
  SetupActive();
  uint64_t table = driver_.Alloc(16);
  driver_.WriteObj(table, Descriptor{driver_.Alloc(8), 8, 0, 0});
  driver_.SetDescriptor(0, {table, 16, kDescFlagIndirect | kDescFlagNext, 1});
  driver_.SetDescriptor(1, {driver_.Alloc(8), 8, 0, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G11_IndirectNotNegotiated_ReturnedWithLen0) {
  SetupActive(/*indirect=*/false);
  uint64_t table = driver_.Alloc(16);
  driver_.WriteObj(table, Descriptor{driver_.Alloc(8), 8, 0, 0});
  driver_.SetDescriptor(0, {table, 16, kDescFlagIndirect, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, G11_IndirectTableOutsideRam_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.HoleAddr(), 16, kDescFlagIndirect, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, WritableThenReadable_ReturnedWithLen0) {
  SetupActive();
  driver_.SetDescriptor(0, {driver_.Alloc(8), 8, kDescFlagWrite | kDescFlagNext, 1});
  driver_.SetDescriptor(1, {driver_.Alloc(8), 8, 0, 0});
  ExpectRejected(0);
}

TEST_F(BadChainTest, WritableThenReadableInIndirectTable_ReturnedWithLen0) {
  SetupActive();
  uint64_t a = driver_.Alloc(8), b = driver_.Alloc(8);
  uint16_t head = driver_.AddIndirectChain({{a, 8, true}, {b, 8, false}});
  driver_.Publish();
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
  ExpectUsed(head, 0);
}

TEST_F(QueueTest, G15_DescriptorRewrittenAfterPop_ChainUnchanged) {
  Activate();
  uint64_t a = driver_.Alloc(8);
  uint16_t head = AddAndPop({{a, 8, true}});
  driver_.SetDescriptor(head, {driver_.HoleAddr(), 0xffff'ffffu, kDescFlagWrite, 0});
  ASSERT_EQ(chain_.writable().size(), 1u);
  EXPECT_EQ(chain_.writable()[0].iov_base, Host(a));
  EXPECT_EQ(chain_.writable_bytes(), 8u);
}

// --- G12, G13: ring setup refused at QueueReady. ---

class ActivateTest : public QueueTest {
 protected:
  // Activate with the fake driver's layout changed by `tweak`; true when it was accepted.
  template <typename Fn>
  bool ActivateWith(Fn tweak) {
    driver_.Configure(&queue_);
    tweak(queue_);
    bool ok = queue_.Activate(&driver_.memory(), true, true).has_value();
    EXPECT_EQ(queue_.ready(), ok);
    return ok;
  }
};

TEST_F(ActivateTest, G12_DescTableMisaligned_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_desc_addr(driver_.desc_addr() + 8); }));
}

TEST_F(ActivateTest, G12_AvailRingMisaligned_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_avail_addr(driver_.avail_addr() + 1); }));
}

TEST_F(ActivateTest, G12_UsedRingMisaligned_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_used_addr(driver_.used_addr() + 2); }));
}

TEST_F(ActivateTest, G12_DescTableInHole_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_desc_addr(driver_.HoleAddr()); }));
}

TEST_F(ActivateTest, G12_UsedRingAboveRam_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_used_addr(driver_.EndAddr()); }));
}

TEST_F(ActivateTest, G12_UsedRingRunningPastEndOfRegion_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_used_addr(driver_.HoleAddr() - 64); }));
}

TEST_F(ActivateTest, G12_AvailOverlapsDescTable_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_avail_addr(driver_.desc_addr() + 16); }));
}

TEST_F(ActivateTest, G12_UsedOverlapsAvail_Refused) {
  EXPECT_FALSE(ActivateWith([&](Queue& q) { q.set_used_addr(driver_.avail_addr() + 4); }));
}

TEST_F(ActivateTest, G12_RingsInHighRegion_Accepted) {
  EXPECT_TRUE(ActivateWith([&](Queue& q) {
    q.set_desc_addr(driver_.HighAddr(0));
    q.set_avail_addr(driver_.HighAddr(4096));
    q.set_used_addr(driver_.HighAddr(8192));
  }));
}

TEST_F(ActivateTest, G12_RefusedQueue_PopDereferencesNothing) {
  ASSERT_FALSE(ActivateWith([&](Queue& q) { q.set_desc_addr(driver_.HoleAddr()); }));
  EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kEmpty);
}

TEST_F(ActivateTest, G13_SizeZero_Refused) {
  EXPECT_FALSE(ActivateWith([](Queue& q) { q.set_size(0); }));
}

TEST_F(ActivateTest, G13_SizeNotPowerOfTwo_Refused) {
  EXPECT_FALSE(ActivateWith([](Queue& q) { q.set_size(12); }));
}

TEST_F(ActivateTest, G13_SizeAboveMax_Refused) {
  EXPECT_FALSE(ActivateWith([](Queue& q) { q.set_size(32); }));
}

TEST_F(ActivateTest, G13_SmallerPowerOfTwo_Accepted) {
  EXPECT_TRUE(ActivateWith([](Queue& q) { q.set_size(1); }));
}

}  // namespace
}  // namespace kite::virtio
