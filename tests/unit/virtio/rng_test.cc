// Unit tests of the virtio entropy device (src/virtio/rng.cc), driven through a real
// virtio::Queue by the fake driver (tests/testing/virtio/fake_driver.h). No KVM.
#include "virtio/rng.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "testing/virtio/fake_driver.h"
#include "virtio/queue.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

using testing::FakeBuffer;
using testing::FakeDriver;

constexpr uint16_t kSize = 32;  // 32 x 64 KiB is twice the device's budget per run
constexpr uint32_t kCap = 64 * 1024;
constexpr uint8_t kSentinel = 0xa5;

class RngTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::shared_ptr<VirtioDevice>> dev = CreateVirtioRng(&loop_);
    ASSERT_TRUE(dev.has_value()) << dev.error().message();
    device_ = *dev;
    driver_.Configure(&queue_);
    ASSERT_TRUE(queue_.Activate(&driver_.memory(), /*event_idx=*/false, /*indirect=*/true));
    ActiveQueues active;
    active.memory = &driver_.memory();
    active.features = device_->device_features();
    active.queues = std::span<Queue* const>(queue_ptrs_);
    active.signal_used = [this](uint16_t q) {
      EXPECT_EQ(q, 0);
      signals_++;
    };
    active.mark_broken = [this](const std::string& why) { broken_.push_back(why); };
    ASSERT_TRUE(device_->Activate(std::move(active)));
  }

  // A buffer of `len` bytes in the low region, every byte kSentinel.
  uint64_t SentinelBuffer(uint32_t len) {
    uint64_t addr = driver_.Alloc(len);
    std::vector<uint8_t> fill(len, kSentinel);
    driver_.WriteBytes(addr, fill.data(), len);
    return addr;
  }
  std::vector<uint8_t> Bytes(uint64_t addr, uint32_t len) {
    std::vector<uint8_t> out(len);
    driver_.ReadBytes(addr, out.data(), len);
    return out;
  }
  // Kicks the queue and runs the loop until the device has nothing more to do.
  void Kick() {
    device_->ProcessQueue(0);
    loop_.restart();
    loop_.run();
  }
  // Submits one chain, kicks, and returns its used element.
  virtio::UsedElement Request(const std::vector<FakeBuffer>& buffers) {
    uint16_t head = driver_.AddChain(buffers);
    driver_.Publish();
    Kick();
    std::optional<UsedElement> used = driver_.PopUsed();
    EXPECT_TRUE(used.has_value());
    if (!used) return {};
    EXPECT_EQ(used->id, head);
    return *used;
  }

  asio::io_context loop_;
  FakeDriver driver_{{.queue_size = kSize}};
  Queue queue_{kSize};
  std::vector<Queue*> queue_ptrs_{&queue_};
  std::shared_ptr<VirtioDevice> device_;
  int signals_ = 0;
  std::vector<std::string> broken_;
};

size_t CountSentinel(const std::vector<uint8_t>& bytes) {
  return static_cast<size_t>(std::count(bytes.begin(), bytes.end(), kSentinel));
}

TEST(RngDevice, Identity_DeviceId4_Version1_OneQueue_ConfigReadsZero) {
  asio::io_context loop;
  Result<std::shared_ptr<VirtioDevice>> dev = CreateVirtioRng(&loop);
  ASSERT_TRUE(dev.has_value());
  EXPECT_EQ((*dev)->device_id(), kDeviceIdRng);
  EXPECT_NE((*dev)->device_features() & FeatureBit(kFeatureVersion1), 0u);
  EXPECT_EQ((*dev)->queue_max_sizes().size(), 1u);
  std::vector<uint8_t> config(8, 0xff);
  (*dev)->ReadConfig(0, config);
  EXPECT_EQ(config, std::vector<uint8_t>(8, 0));
}

TEST(RngDevice, Create_NoLoop_Refused) {
  EXPECT_FALSE(CreateVirtioRng(nullptr).has_value());
}

TEST_F(RngTest, Request_FillsWholeBuffer_UsedLenIsBufferLen) {
  uint64_t buf = SentinelBuffer(64);
  UsedElement used = Request({{buf, 64, true}});
  EXPECT_EQ(used.len, 64u);
  // 64 random bytes that all equal the sentinel: probability 2^-512.
  std::vector<uint8_t> got = Bytes(buf, 64);
  EXPECT_LT(CountSentinel(got), 64u);
  EXPECT_NE(got, std::vector<uint8_t>(64, 0));
  EXPECT_EQ(signals_, 1);
}

TEST_F(RngTest, TwoRequests_GetDifferentBytes) {
  uint64_t a = SentinelBuffer(32), b = SentinelBuffer(32);
  EXPECT_EQ(Request({{a, 32, true}}).len, 32u);
  EXPECT_EQ(Request({{b, 32, true}}).len, 32u);
  EXPECT_NE(Bytes(a, 32), Bytes(b, 32));
}

TEST_F(RngTest, ChainOfSeveralBuffers_AcrossRegions_AllFilled) {
  uint64_t low = SentinelBuffer(100);
  uint64_t high = driver_.HighAddr(4096);
  std::vector<uint8_t> fill(300, kSentinel);
  driver_.WriteBytes(high, fill.data(), fill.size());
  UsedElement used = Request({{low, 100, true}, {high, 300, true}});
  EXPECT_EQ(used.len, 400u);
  EXPECT_LT(CountSentinel(Bytes(low, 100)), 100u);
  std::vector<uint8_t> got(300);
  driver_.ReadBytes(high, got.data(), got.size());
  EXPECT_LT(CountSentinel(got), 300u);
}

TEST_F(RngTest, G18_ReadableOnlyChain_UsedLen0_NothingWritten) {
  uint64_t buf = SentinelBuffer(64);
  UsedElement used = Request({{buf, 64, false}});
  EXPECT_EQ(used.len, 0u);
  EXPECT_EQ(CountSentinel(Bytes(buf, 64)), 64u);
  EXPECT_EQ(device_->counters().drops, 1u);
}

TEST_F(RngTest, ReadableThenWritable_UsedLen0_WritablePartUntouched) {
  uint64_t in = SentinelBuffer(16), out = SentinelBuffer(64);
  UsedElement used = Request({{in, 16, false}, {out, 64, true}});
  EXPECT_EQ(used.len, 0u);
  EXPECT_EQ(CountSentinel(Bytes(out, 64)), 64u);
}

TEST_F(RngTest, G10_LargeChain_CappedAt64KiB_RestUntouched) {
  constexpr uint32_t kLen = 3 * kCap;
  uint64_t buf = SentinelBuffer(kLen);
  UsedElement used = Request({{buf, kLen, true}});
  EXPECT_EQ(used.len, kCap);
  std::vector<uint8_t> got = Bytes(buf, kLen);
  std::vector<uint8_t> head(got.begin(), got.begin() + kCap);
  std::vector<uint8_t> tail(got.begin() + kCap, got.end());
  EXPECT_LT(CountSentinel(head), kCap / 2);  // ~256 expected
  EXPECT_EQ(CountSentinel(tail), tail.size());
}

TEST_F(RngTest, CapSpansDescriptors_SecondBufferFilledOnlyUpToCap) {
  uint64_t a = SentinelBuffer(kCap - 100), b = SentinelBuffer(1000);
  UsedElement used = Request({{a, kCap - 100, true}, {b, 1000, true}});
  EXPECT_EQ(used.len, kCap);
  std::vector<uint8_t> got = Bytes(b, 1000);
  EXPECT_LT(CountSentinel({got.begin(), got.begin() + 100}), 100u);
  EXPECT_EQ(CountSentinel({got.begin() + 100, got.end()}), 900u);
}

TEST_F(RngTest, Counters_CountRequestsAndBytes) {
  uint64_t a = SentinelBuffer(10), b = SentinelBuffer(20);
  Request({{a, 10, true}});
  Request({{b, 20, true}});
  DeviceCounters c = device_->counters();
  EXPECT_EQ(c.requests, 2u);
  EXPECT_EQ(c.bytes_read, 30u);
  EXPECT_EQ(c.errors, 0u);
  EXPECT_EQ(c.drops, 0u);
}

TEST_F(RngTest, FullQueueOfLargeChains_ContinuedOnLoop_AllCompleted_OneSignalPerRun) {
  // 32 chains x 64 KiB = 2 MiB: two runs of the device's 1 MiB budget, the second one posted
  // to the loop by the first.
  for (int i = 0; i < kSize; i++) driver_.AddChain({{driver_.Alloc(kCap), kCap, true}});
  driver_.Publish();
  Kick();
  int completed = 0;
  while (std::optional<UsedElement> used = driver_.PopUsed()) {
    EXPECT_EQ(used->len, kCap);
    completed++;
  }
  EXPECT_EQ(completed, kSize);
  EXPECT_EQ(signals_, 2);
}

TEST_F(RngTest, G33_AfterReset_KickWritesNothing) {
  uint64_t buf = SentinelBuffer(64);
  driver_.AddChain({{buf, 64, true}});
  driver_.Publish();
  device_->Reset();
  Kick();
  EXPECT_FALSE(driver_.PopUsed().has_value());
  EXPECT_EQ(CountSentinel(Bytes(buf, 64)), 64u);
  EXPECT_EQ(signals_, 0);
}

TEST_F(RngTest, G33_ResetWhileContinuationPosted_ContinuationWritesNothing) {
  std::vector<uint64_t> bufs;
  for (int i = 0; i < kSize; i++) {
    bufs.push_back(SentinelBuffer(kCap));
    driver_.AddChain({{bufs.back(), kCap, true}});
  }
  driver_.Publish();
  device_->ProcessQueue(0);  // one run: the budget is spent before the last chains
  int first_run = 0;
  while (driver_.PopUsed()) first_run++;
  ASSERT_LT(first_run, kSize);
  device_->Reset();
  loop_.restart();
  loop_.run();  // the posted continuation finds a new generation and stops
  EXPECT_FALSE(driver_.PopUsed().has_value());
  EXPECT_EQ(CountSentinel(Bytes(bufs.back(), kCap)), kCap);
}

TEST_F(RngTest, G5_HeadOutOfRange_MarksBroken_LaterKicksIgnored) {
  driver_.AddAvail(kSize + 3);
  driver_.Publish();
  Kick();
  ASSERT_EQ(broken_.size(), 1u);
  uint64_t buf = SentinelBuffer(64);
  driver_.AddChain({{buf, 64, true}});
  driver_.Publish();
  Kick();
  EXPECT_EQ(broken_.size(), 1u);
  EXPECT_EQ(CountSentinel(Bytes(buf, 64)), 64u);
}

TEST_F(RngTest, IndirectChain_Filled) {
  uint64_t buf = SentinelBuffer(48);
  uint16_t head = driver_.AddIndirectChain({{buf, 48, true}});
  driver_.Publish();
  Kick();
  std::optional<UsedElement> used = driver_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, head);
  EXPECT_EQ(used->len, 48u);
  EXPECT_LT(CountSentinel(Bytes(buf, 48)), 48u);
}

}  // namespace
}  // namespace kite::virtio
