// Device quiesce under load (VirtioDevice::Quiesce, called on a thread that is not the loop):
// virtio-blk waits until every request on a slow disk completed and its used entry was pushed,
// then flushes; virtio-net gives popped receive buffers and a refused transmit chain back to
// the ring (next_avail rewinds) so the guest's buffers are not lost.
#include <gtest/gtest.h>

#include <asio/post.hpp>
#include <chrono>
#include <cstring>
#include <future>

#include "block_test_util.h"
#include "net_test_frames.h"
#include "snapshot_harness.h"
#include "virtio/net.h"

namespace kite::virtio {
namespace {

using kite::testing::FakeDriver;
using testing::BlkReq;
using testing::BlockHarness;
using testing::HarnessOptions;
using testing::MemDisk;

constexpr uint64_t kHeldOffset = 64 * 512;

HarnessOptions BlkOptions() {
  HarnessOptions o;
  o.block.queue_size = 32;
  o.block.io_workers = 8;  // the held reads do not starve the writes
  return o;
}

TEST(BlockQuiesceTest, Quiesce_RequestsOnSlowDisk_ReturnsOnlyWhenAllPushed) {
  auto disk = std::make_shared<MemDisk>(1 << 20);
  BlockHarness h(disk, BlkOptions());
  disk->HoldAt(kHeldOffset);
  std::vector<BlkReq> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(h.Read(kHeldOffset / 512, 512));  // held
  for (int i = 0; i < 6; ++i) reqs.push_back(h.Write(i, std::vector<uint8_t>(512, 7)));
  h.Kick();
  ASSERT_TRUE(disk->WaitHeld(4));
  int flushes = disk->flushes.load();
  auto quiesced = std::async(std::launch::async, [&] { return h.device().Quiesce(); });
  // The loop delivers the completions that are not held; the quiesce still waits.
  h.RunUntil([] { return false; }, 100);
  EXPECT_EQ(quiesced.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  EXPECT_EQ(h.queue().in_flight(), 4);
  disk->Release();
  ASSERT_TRUE(h.RunUntil([&] {
    return quiesced.wait_for(std::chrono::milliseconds(0)) == std::future_status::ready;
  }));
  Result<void> r = quiesced.get();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(h.queue().in_flight(), 0);
  EXPECT_EQ(h.driver().used_idx(), 10);
  for (const BlkReq& req : reqs) EXPECT_EQ(h.Status(req), blk::kStatusOk);
  EXPECT_GT(disk->flushes.load(), flushes);  // memory and disk are a consistent pair
  EXPECT_GE(h.signals(), 1);
  EXPECT_TRUE(h.queue().Save());
}

TEST(BlockQuiesceTest, Quiesced_KickPopsNothing_UnquiesceThenServes) {
  auto disk = std::make_shared<MemDisk>(1 << 20);
  BlockHarness h(disk, BlkOptions());
  ASSERT_TRUE(h.device().Quiesce());
  BlkReq r = h.Write(3, std::vector<uint8_t>(512, 9));
  h.Kick();
  h.RunUntil([] { return false; }, 50);
  EXPECT_EQ(h.driver().used_idx(), 0);
  h.device().Unquiesce();
  std::vector<UsedElement> used = h.Complete(1);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, r.head);
}

TEST(BlockQuiesceTest, Quiesce_OnTheLoopThread_RefusedNotDeadlocked) {
  auto disk = std::make_shared<MemDisk>(1 << 20);
  BlockHarness h(disk, BlkOptions());
  std::optional<bool> ok;
  asio::post(h.loop(), [&] { ok = h.device().Quiesce().has_value(); });
  h.RunUntil([&] { return ok.has_value(); });
  ASSERT_TRUE(ok.has_value());
  EXPECT_FALSE(*ok);
  h.device().Unquiesce();
}

// virtio-net at device level: RX and TX queues in one memory, the fake FrameSink backend.
class NetQuiesceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NetOptions options{.mac = nettest::kGuestMac, .queue_size = 16};
    device_ = *CreateVirtioNet(snaptest::MakeFakeNetBackend(backend_), options, &loop_);
    rx_.Configure(&rx_queue_);
    tx_.Configure(&tx_queue_);
    ASSERT_TRUE(rx_queue_.Activate(&rx_.memory(), false, true));
    ASSERT_TRUE(tx_queue_.Activate(&tx_.memory(), false, true));
    ActiveQueues active;
    active.memory = &rx_.memory();
    active.features = device_->device_features();  // MRG_RXBUF included
    active.queues = std::span<Queue* const>(queues_);
    active.signal_used = [this](uint16_t q) { ++signals_[q]; };
    active.mark_broken = [](const std::string&) { ADD_FAILURE() << "broken"; };
    ASSERT_TRUE(device_->Activate(std::move(active)));
  }
  uint16_t AddRx(uint32_t len) { return rx_.AddChain({{rx_.Alloc(len), len, true}}); }
  bool Deliver(size_t frame_len) {
    std::vector<uint8_t> bytes(12 + frame_len, 0x22);
    std::memset(bytes.data(), 0, 12);
    bool taken = backend_->sink(bytes);
    Poll();
    return taken;
  }
  void Poll() {
    loop_.restart();
    loop_.poll();
  }

  asio::io_context loop_;
  std::shared_ptr<snaptest::NetBackendState> backend_ =
      std::make_shared<snaptest::NetBackendState>();
  FakeDriver rx_{{.queue_size = 16}};
  FakeDriver tx_{&rx_, 16};
  Queue rx_queue_{16};
  Queue tx_queue_{16};
  Queue ctrl_queue_{64};  // the control queue, not enabled
  std::vector<Queue*> queues_{&rx_queue_, &tx_queue_, &ctrl_queue_};
  std::shared_ptr<VirtioDevice> device_;
  int signals_[3] = {0, 0, 0};
};

TEST_F(NetQuiesceTest, Quiesce_RxChainsPopped_NextAvailRewound) {
  uint16_t first = AddRx(256);
  AddRx(256);
  AddRx(256);
  rx_.Publish();
  EXPECT_FALSE(Deliver(1500));  // three 256-byte buffers cannot hold it: all three held
  EXPECT_EQ(rx_queue_.in_flight(), 3);
  ASSERT_TRUE(device_->Quiesce());
  EXPECT_EQ(rx_queue_.in_flight(), 0);
  QueueState s = *rx_queue_.Save();
  EXPECT_EQ(s.next_avail, 0);  // the guest's buffers are not lost
  EXPECT_EQ(s.next_used, 0);
  EXPECT_FALSE(Deliver(60));  // quiesced: the backend keeps frames
  EXPECT_EQ(rx_.used_idx(), 0);
  device_->Unquiesce();
  Poll();
  EXPECT_GE(backend_->resumes, 1);  // the backend is told to deliver again
  EXPECT_TRUE(Deliver(60));
  std::optional<UsedElement> used = rx_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, first);
  EXPECT_EQ(used->len, 72u);
}

TEST_F(NetQuiesceTest, Quiesce_ReturnedChainAmongHeld_EarlierOnesUsedEmptyLastGivenBack) {
  uint16_t a = AddRx(256);
  uint16_t b = AddRx(8);  // smaller than the header: returned at once with length 0
  uint16_t c = AddRx(256);
  rx_.Publish();
  EXPECT_FALSE(Deliver(1500));
  EXPECT_EQ(rx_queue_.in_flight(), 2);  // a and c held
  ASSERT_TRUE(device_->Quiesce());
  EXPECT_EQ(rx_queue_.in_flight(), 0);
  std::optional<UsedElement> u1 = rx_.PopUsed(), u2 = rx_.PopUsed();
  ASSERT_TRUE(u1 && u2);
  EXPECT_EQ(u1->id, b);
  EXPECT_EQ(u2->id, a);  // cannot be given back past b: returned unused
  EXPECT_EQ(u2->len, 0u);
  EXPECT_EQ(rx_queue_.Save()->next_avail, 2);  // c is available again
  device_->Unquiesce();
  EXPECT_TRUE(Deliver(60));
  std::optional<UsedElement> u3 = rx_.PopUsed();
  ASSERT_TRUE(u3.has_value());
  EXPECT_EQ(u3->id, c);
}

TEST_F(NetQuiesceTest, Quiesce_TxRefusedByBackend_GivenBackAndSentAfterUnquiesce) {
  backend_->full = true;
  net::Header hdr{};
  uint64_t h = tx_.Alloc(sizeof(hdr));
  tx_.WriteObj(h, hdr);
  std::vector<uint8_t> frame = nettest::TestFrame(60, 5);
  uint64_t f = tx_.Alloc(60);
  tx_.WriteBytes(f, frame.data(), frame.size());
  uint16_t head = tx_.AddChain({{h, sizeof(hdr), false}, {f, 60, false}});
  tx_.Publish();
  device_->ProcessQueue(1);
  Poll();
  EXPECT_EQ(tx_queue_.in_flight(), 1);  // pending: the backend is full
  ASSERT_TRUE(device_->Quiesce());
  EXPECT_EQ(tx_queue_.in_flight(), 0);
  EXPECT_EQ(tx_queue_.Save()->next_avail, 0);
  EXPECT_TRUE(backend_->sent.empty());
  backend_->full = false;
  device_->Unquiesce();
  device_->ProcessQueue(1);  // the transport's re-kick on Resume
  Poll();
  ASSERT_EQ(backend_->sent.size(), 1u);
  std::optional<UsedElement> used = tx_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, head);
}

TEST_F(NetQuiesceTest, DeviceState_RoundTripAndMalformedRefused) {
  // Version 2: status, MAC, pairs in use, filter flags (promiscuous after reset), no table.
  std::vector<uint8_t> state = device_->SaveDeviceState();
  EXPECT_EQ(state, (std::vector<uint8_t>{2, net::kStatusLinkUp, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56,
                                         1, 0, 1, 0, 0}));
  EXPECT_TRUE(device_->RestoreDeviceState(state));
  EXPECT_TRUE(device_->RestoreDeviceState(std::vector<uint8_t>{1, 1, 0}));  // version 1
  EXPECT_FALSE(device_->RestoreDeviceState(std::vector<uint8_t>{}));
  EXPECT_FALSE(device_->RestoreDeviceState(std::vector<uint8_t>{2, 1, 0}));  // too short
  EXPECT_FALSE(device_->RestoreDeviceState(std::vector<uint8_t>{3, 1, 0}));  // version
  EXPECT_FALSE(device_->RestoreDeviceState(std::vector<uint8_t>{1, 4, 0}));  // unknown bit
  EXPECT_FALSE(device_->RestoreDeviceState(std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(device_->SaveDeviceState(), state);
}

}  // namespace
}  // namespace kite::virtio
