// Unit tests of the virtio-net device (src/virtio/net.cc, net_rx.cc), driven through real
// virtio::Queues by two fake drivers (RX and TX) and a fake backend that records what the
// device sends and lets the test deliver frames. No KVM, no root.
#include "virtio/net.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fake_throttle_time.h"
#include "net_test_frames.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/net_header.h"
#include "virtio/queue.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

using nettest::Hdr;
using nettest::TestFrame;
using testing::FakeBuffer;
using testing::FakeDriver;

constexpr uint16_t kSize = 16;
constexpr uint8_t kSentinel = 0xa5;

// What the fake backend saw and does; shared because the device owns the backend.
struct BackendState {
  bool vnet = true;
  uint64_t offloads = kNetOffloadFeatures;
  bool full = false;  // Send returns false
  bool fail = false;  // Send returns an error
  std::vector<std::vector<uint8_t>> sent;
  std::vector<const void*> first_iov;  // iov[0].iov_base of each Send
  uint64_t offloads_set = ~uint64_t{0};
  NetBackend::FrameSink sink;
  std::function<void()> on_writable;
  int resumes = 0;
};

class FakeBackend final : public NetBackend {
 public:
  explicit FakeBackend(std::shared_ptr<BackendState> s) : s_(std::move(s)) {}
  bool has_vnet_header() const override { return s_->vnet; }
  uint64_t offload_features() const override { return s_->offloads; }
  Result<void> SetOffloads(uint64_t features) override {
    s_->offloads_set = features;
    return {};
  }
  Result<bool> Send(std::span<const iovec> iov) override {
    if (s_->fail) return Err("fake failure");
    if (s_->full) return false;
    std::vector<uint8_t> frame;
    for (const iovec& v : iov) {
      auto* p = static_cast<const uint8_t*>(v.iov_base);
      frame.insert(frame.end(), p, p + v.iov_len);
    }
    s_->sent.push_back(std::move(frame));
    s_->first_iov.push_back(iov.empty() ? nullptr : iov[0].iov_base);
    return true;
  }
  void StartReceive(FrameSink sink, std::function<void()> on_writable) override {
    s_->sink = std::move(sink);
    s_->on_writable = std::move(on_writable);
  }
  void ResumeReceive() override { ++s_->resumes; }
  void Stop() override {}
  std::string description() const override { return "fake"; }
  NetBackendCounters counters() const override { return {}; }

 private:
  std::shared_ptr<BackendState> s_;
};

uint64_t Bit(int bit) {
  return FeatureBit(bit);
}

class NetTest : public ::testing::Test {
 protected:
  void Create(bool vnet = true) {
    backend_->vnet = vnet;
    NetOptions options = options_;
    options.mac = nettest::kGuestMac;
    options.queue_size = kSize;
    auto dev = CreateVirtioNet(std::make_unique<FakeBackend>(backend_), options, &loop_);
    ASSERT_TRUE(dev.has_value()) << dev.error().message();
    device_ = *dev;
  }
  // Creates the device and activates it with the offered features minus `without`.
  void Start(bool vnet = true, uint64_t without = 0) {
    Create(vnet);
    uint64_t features = device_->device_features() & ~without;
    rx_driver_.Configure(&rx_queue_);
    tx_driver_.Configure(&tx_queue_);
    ASSERT_TRUE(rx_queue_.Activate(&rx_driver_.memory(), false, true));
    ASSERT_TRUE(tx_queue_.Activate(&tx_driver_.memory(), false, true));
    ASSERT_TRUE(device_->AcceptFeatures(features));
    ActiveQueues active;
    active.memory = &rx_driver_.memory();
    active.features = features;
    active.queues = std::span<Queue* const>(queues_);
    active.signal_used = [this](uint16_t q) { ++signals_[q]; };
    active.mark_broken = [this](const std::string& why) { broken_.push_back(why); };
    ASSERT_TRUE(device_->Activate(std::move(active)));
  }

  // Puts header + frame in TX memory as two buffers, kicks and runs the loop.
  uint16_t Transmit(const net::Header& hdr, const std::vector<uint8_t>& frame) {
    uint64_t h = tx_driver_.Alloc(sizeof(hdr));
    tx_driver_.WriteObj(h, hdr);
    uint64_t f = tx_driver_.Alloc(static_cast<uint32_t>(frame.size()));
    tx_driver_.WriteBytes(f, frame.data(), frame.size());
    uint16_t head = tx_driver_.AddChain(
        {{h, sizeof(hdr), false}, {f, static_cast<uint32_t>(frame.size()), false}});
    tx_driver_.Publish();
    device_->ProcessQueue(1);
    Run();
    return head;
  }
  // Adds a writable RX buffer of `len` sentinel bytes; returns its guest address.
  uint64_t AddRxBuffer(uint32_t len) {
    uint64_t addr = rx_driver_.Alloc(len);
    std::vector<uint8_t> fill(len, kSentinel);
    rx_driver_.WriteBytes(addr, fill.data(), len);
    rx_driver_.AddChain({{addr, len, true}});
    rx_driver_.Publish();
    return addr;
  }
  // The backend hands a frame (with a vnet header when `vnet`) to the device.
  bool Receive(const std::vector<uint8_t>& frame, net::Header hdr = {}) {
    size_t offset = backend_->vnet ? sizeof(hdr) : 0;
    std::vector<uint8_t> bytes(offset + frame.size());
    if (offset != 0) std::memcpy(bytes.data(), &hdr, offset);
    if (!frame.empty()) std::memcpy(bytes.data() + offset, frame.data(), frame.size());
    bool taken = backend_->sink(bytes);
    Run();
    return taken;
  }
  std::vector<uint8_t> RxBytes(uint64_t addr, uint32_t len) {
    std::vector<uint8_t> out(len);
    rx_driver_.ReadBytes(addr, out.data(), len);
    return out;
  }
  void Run() {
    loop_.restart();
    loop_.poll();
  }

  NetOptions options_;  // rate limits and their fake clock, for the tests that set them
  asio::io_context loop_;
  std::shared_ptr<BackendState> backend_ = std::make_shared<BackendState>();
  FakeDriver rx_driver_{{.queue_size = kSize}};
  FakeDriver tx_driver_{{.queue_size = kSize}};
  Queue rx_queue_{kSize};
  Queue tx_queue_{kSize};
  Queue ctrl_queue_{64};  // the control queue, not enabled
  std::vector<Queue*> queues_{&rx_queue_, &tx_queue_, &ctrl_queue_};
  std::shared_ptr<VirtioDevice> device_;
  int signals_[3] = {0, 0, 0};
  std::vector<std::string> broken_;
};

// --- Identity, features, configuration space ---

TEST_F(NetTest, Features_VnetBackend_OffloadsMacStatusMrgRxbuf) {
  Create(true);
  EXPECT_EQ(device_->device_id(), kDeviceIdNet);
  uint64_t f = device_->device_features();
  for (int bit : {kFeatureVersion1, net::kFeatureMac, net::kFeatureStatus, net::kFeatureMrgRxbuf,
                  net::kFeatureCsum, net::kFeatureGuestCsum, net::kFeatureHostTso4,
                  net::kFeatureHostTso6, net::kFeatureGuestTso4, net::kFeatureGuestTso6}) {
    EXPECT_NE(f & Bit(bit), 0u) << "bit " << bit;
  }
  EXPECT_EQ(f & (Bit(net::kFeatureHostUfo) | Bit(net::kFeatureMq)), 0u);
  EXPECT_EQ(f & kNetCtrlFeatures, kNetCtrlFeatures);  // net_ctrl_test.cc
  EXPECT_EQ(device_->queue_max_sizes(), (std::vector<uint16_t>{kSize, kSize, kCtrlQueueSize}));
}

TEST_F(NetTest, Features_PlainBackend_NoOffloads) {
  Create(false);
  uint64_t f = device_->device_features();
  EXPECT_EQ(f & kNetOffloadFeatures, 0u);
  EXPECT_NE(f & Bit(net::kFeatureMrgRxbuf), 0u);
  EXPECT_NE(f & Bit(kFeatureVersion1), 0u);
}

TEST_F(NetTest, Features_BackendWithoutCsum_NoTsoOffered) {
  backend_->offloads = Bit(net::kFeatureHostTso4) | Bit(net::kFeatureGuestCsum);
  Create(true);
  uint64_t f = device_->device_features();
  EXPECT_EQ(f & Bit(net::kFeatureHostTso4), 0u);
  EXPECT_NE(f & Bit(net::kFeatureGuestCsum), 0u);
}

TEST_F(NetTest, AcceptFeatures_TsoWithoutChecksum_Refused) {
  Create(true);
  uint64_t f = device_->device_features();
  EXPECT_FALSE(device_->AcceptFeatures(f & ~Bit(net::kFeatureCsum)));
  EXPECT_FALSE(device_->AcceptFeatures(f & ~Bit(net::kFeatureGuestCsum)));
  EXPECT_TRUE(device_->AcceptFeatures(f));
}

TEST_F(NetTest, Config_MacThenStatusLinkUp) {
  Create(true);
  uint8_t config[12];
  device_->ReadConfig(0, config);
  EXPECT_TRUE(std::equal(nettest::kGuestMac.begin(), nettest::kGuestMac.end(), config));
  uint8_t status[2];
  device_->ReadConfig(6, status);
  EXPECT_EQ(status[0] | status[1] << 8, net::kStatusLinkUp);
  uint8_t beyond[4] = {1, 2, 3, 4};
  device_->ReadConfig(64, beyond);
  EXPECT_EQ(beyond[0] | beyond[1] | beyond[2] | beyond[3], 0);
}

// mtu=: VIRTIO_NET_F_MTU offered and the MTU at offset 10 (5.1.4); without it the field does
// not exist and reads as zero.
TEST_F(NetTest, Mtu_OfferedWithItsConfigField_AbsentWithout) {
  options_.mtu = 9000;
  Create(true);
  EXPECT_NE(device_->device_features() & Bit(net::kFeatureMtu), 0u);
  uint8_t mtu[2] = {};
  device_->ReadConfig(10, mtu);
  EXPECT_EQ(mtu[0] | mtu[1] << 8, 9000);
  EXPECT_TRUE(device_->AcceptFeatures(device_->device_features()));
  options_.mtu = 0;
  Create(true);
  EXPECT_EQ(device_->device_features() & Bit(net::kFeatureMtu), 0u);
  mtu[0] = mtu[1] = 0xff;
  device_->ReadConfig(10, mtu);
  EXPECT_EQ(mtu[0] | mtu[1], 0);
}

TEST_F(NetTest, SetLink_DownClearsStatusAndDropsBothWays_UpDeliversAgain) {
  Start(true);
  auto& nic = static_cast<NetDevice&>(*device_);
  nic.SetLink(false);
  EXPECT_FALSE(nic.link_up());
  uint8_t status[2] = {0xff, 0xff};
  device_->ReadConfig(6, status);
  EXPECT_EQ(status[0] | status[1] << 8, 0);
  // Down: the guest's frame goes nowhere (its chain comes back), a host frame is dropped.
  uint16_t head = Transmit({}, TestFrame(60, 1));
  EXPECT_TRUE(backend_->sent.empty());
  auto used = tx_driver_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, head);
  uint64_t addr = AddRxBuffer(2048);
  device_->ProcessQueue(0);
  Receive(TestFrame(80, 2));
  EXPECT_FALSE(rx_driver_.PopUsed().has_value());
  EXPECT_EQ(RxBytes(addr, 1)[0], kSentinel);
  EXPECT_EQ(device_->counters().drops, 2u);
  // Up again: both ways work.
  nic.SetLink(true);
  device_->ReadConfig(6, status);
  EXPECT_EQ(status[0] | status[1] << 8, net::kStatusLinkUp);
  Transmit({}, TestFrame(60, 3));
  EXPECT_EQ(backend_->sent.size(), 1u);
  Receive(TestFrame(80, 4));
  EXPECT_TRUE(rx_driver_.PopUsed().has_value());
  // The link status is device state: a snapshot carries it.
  nic.SetLink(false);
  std::vector<uint8_t> saved = device_->SaveDeviceState();
  EXPECT_EQ(saved.size(), 14u);  // version 2 with an empty MAC table (net_snapshot.cc)
  EXPECT_EQ(saved[1], 0);
}

TEST_F(NetTest, Config_WritesIgnored) {
  Create(true);
  uint8_t junk[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  device_->WriteConfig(0, junk);
  uint8_t mac[6];
  device_->ReadConfig(0, mac);
  EXPECT_TRUE(std::equal(nettest::kGuestMac.begin(), nettest::kGuestMac.end(), mac));
}

TEST_F(NetTest, Create_ZeroMac_GeneratesLocallyAdministeredUnicast) {
  auto dev = CreateVirtioNet(std::make_unique<FakeBackend>(backend_), NetOptions{}, &loop_);
  ASSERT_TRUE(dev.has_value());
  uint8_t mac[6];
  (*dev)->ReadConfig(0, mac);
  EXPECT_EQ(mac[0], 0x52);
  EXPECT_EQ(mac[0] & 1, 0);
}

TEST_F(NetTest, Create_QueueSizeNotPowerOfTwo_Refused) {
  NetOptions options{.mac = nettest::kGuestMac, .queue_size = 100};
  EXPECT_FALSE(CreateVirtioNet(std::make_unique<FakeBackend>(backend_), options, &loop_));
}

TEST_F(NetTest, Activate_TellsBackendTheNegotiatedOffloads) {
  Start(true, Bit(net::kFeatureGuestTso6));
  EXPECT_NE(backend_->offloads_set & Bit(net::kFeatureGuestTso4), 0u);
  EXPECT_EQ(backend_->offloads_set & Bit(net::kFeatureGuestTso6), 0u);
}

// --- Transmit ---

TEST_F(NetTest, Tx_SmallFrame_VnetBackend_GetsHeaderAndFrame) {
  Start(true);
  std::vector<uint8_t> frame = TestFrame(60, 7);
  uint16_t head = Transmit({}, frame);
  ASSERT_EQ(backend_->sent.size(), 1u);
  ASSERT_EQ(backend_->sent[0].size(), kNetHeaderSize + frame.size());
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), backend_->sent[0].begin() + 12));
  auto used = tx_driver_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, head);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(signals_[1], 1);
  EXPECT_EQ(device_->counters().bytes_written, frame.size());
}

TEST_F(NetTest, Tx_SmallFrame_PlainBackend_HeaderStripped) {
  Start(false);
  std::vector<uint8_t> frame = TestFrame(100, 3);
  Transmit({}, frame);
  ASSERT_EQ(backend_->sent.size(), 1u);
  EXPECT_EQ(backend_->sent[0], frame);
}

TEST_F(NetTest, Tx_64KTsoFrame_PassedWithGsoHeader) {
  Start(true);
  std::vector<uint8_t> frame = TestFrame(65000, 1, nettest::kEthertypeIpv4);
  net::Header hdr = Hdr(net::kHdrFlagNeedsCsum, net::kGsoTcpv4, 1448, 34, 16);
  Transmit(hdr, frame);
  ASSERT_EQ(backend_->sent.size(), 1u);
  ASSERT_EQ(backend_->sent[0].size(), kNetHeaderSize + frame.size());
  net::Header sent;
  std::memcpy(&sent, backend_->sent[0].data(), sizeof(sent));
  EXPECT_EQ(sent.gso_type, net::kGsoTcpv4);
  EXPECT_EQ(sent.gso_size, 1448);
  EXPECT_EQ(sent.csum_start, 34);
}

TEST_F(NetTest, Tx_ManyFrames_AllSentInOrder) {
  Start(true);
  for (uint8_t i = 0; i < 40; ++i) {
    Transmit({}, TestFrame(64, i));
    ASSERT_TRUE(tx_driver_.PopUsed().has_value());
  }
  ASSERT_EQ(backend_->sent.size(), 40u);
  for (uint8_t i = 0; i < 40; ++i)
    EXPECT_EQ(backend_->sent[i][26], i);  // 12-byte header + 14-byte Ethernet header: seed
}

TEST_F(NetTest, G23_TxFrameOver65562Bytes_DroppedAndCounted) {
  Start(true);
  uint16_t head = Transmit({}, TestFrame(net::kMaxFrameWithHeader - kNetHeaderSize + 1));
  EXPECT_TRUE(backend_->sent.empty());
  auto used = tx_driver_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, head);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(device_->counters().drops, 1u);
}

TEST_F(NetTest, G23_TxFrameOfExactly65562Bytes_Sent) {
  Start(true);
  Transmit({}, TestFrame(net::kMaxFrameWithHeader - kNetHeaderSize));
  EXPECT_EQ(backend_->sent.size(), 1u);
}

TEST_F(NetTest, G23_TxChainShorterThanHeader_Dropped) {
  Start(true);
  uint64_t addr = tx_driver_.Alloc(8);
  tx_driver_.AddChain({{addr, 8, false}});
  tx_driver_.Publish();
  device_->ProcessQueue(1);
  Run();
  EXPECT_TRUE(backend_->sent.empty());
  EXPECT_TRUE(tx_driver_.PopUsed().has_value());
  EXPECT_EQ(device_->counters().drops, 1u);
}

TEST_F(NetTest, G25_TxNeedsCsumWithoutCsumFeature_Dropped) {
  Start(true, Bit(net::kFeatureCsum) | Bit(net::kFeatureHostTso4) | Bit(net::kFeatureHostTso6));
  net::Header hdr = Hdr(net::kHdrFlagNeedsCsum, net::kGsoNone, 0, 34, 16);
  Transmit(hdr, TestFrame(100));
  EXPECT_TRUE(backend_->sent.empty());
  EXPECT_EQ(device_->counters().drops, 1u);
}

TEST_F(NetTest, G25_TxGsoWithoutHostTso_Dropped) {
  Start(true, Bit(net::kFeatureHostTso4));
  net::Header hdr = Hdr(net::kHdrFlagNeedsCsum, net::kGsoTcpv4, 1448, 34, 16);
  Transmit(hdr, TestFrame(3000));
  EXPECT_TRUE(backend_->sent.empty());
  EXPECT_EQ(device_->counters().drops, 1u);
}

TEST_F(NetTest, G25_TxOffloadOnPlainBackend_Dropped) {
  Start(false);
  net::Header hdr = Hdr(net::kHdrFlagNeedsCsum, net::kGsoNone, 0, 34, 16);
  Transmit(hdr, TestFrame(100));
  EXPECT_TRUE(backend_->sent.empty());
}

TEST_F(NetTest, G15_TxHeaderGivenToBackendIsTheDeviceCopy) {
  Start(true);
  Transmit({}, TestFrame(64));
  ASSERT_EQ(backend_->first_iov.size(), 1u);
  auto* p = static_cast<const uint8_t*>(backend_->first_iov[0]);
  for (const MemoryRegion& r : tx_driver_.memory().regions()) {
    EXPECT_FALSE(p >= r.host && p < r.host + r.size) << "header points into guest memory";
  }
}

TEST_F(NetTest, Tx_BackendFull_ChainKeptUntilWritable) {
  Start(true);
  backend_->full = true;
  Transmit({}, TestFrame(64));
  EXPECT_FALSE(tx_driver_.PopUsed().has_value());
  backend_->full = false;
  backend_->on_writable();
  Run();
  EXPECT_EQ(backend_->sent.size(), 1u);
  EXPECT_TRUE(tx_driver_.PopUsed().has_value());
}

TEST_F(NetTest, Tx_BackendError_DroppedAndCountedAsError) {
  Start(true);
  backend_->fail = true;
  Transmit({}, TestFrame(64));
  EXPECT_TRUE(tx_driver_.PopUsed().has_value());
  EXPECT_EQ(device_->counters().errors, 1u);
}

TEST_F(NetTest, Tx_BrokenRing_MarksDeviceBroken) {
  Start(true);
  tx_driver_.SetAvailIdx(kSize + 5);  // G3: avail runs ahead by more than the queue size
  device_->ProcessQueue(1);
  Run();
  EXPECT_EQ(broken_.size(), 1u);
}

// --- Receive ---

TEST_F(NetTest, Rx_SingleBuffer_HeaderWithOneBufferThenFrame) {
  Start(true, Bit(net::kFeatureMrgRxbuf));
  uint64_t buf = AddRxBuffer(2048);
  std::vector<uint8_t> frame = TestFrame(1500, 9);
  EXPECT_TRUE(Receive(frame));
  auto used = rx_driver_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, kNetHeaderSize + frame.size());
  net::Header hdr = rx_driver_.ReadObj<net::Header>(buf);
  EXPECT_EQ(hdr.num_buffers, 1);
  EXPECT_EQ(RxBytes(buf + 12, 1500), frame);
  EXPECT_EQ(RxBytes(buf + 12 + 1500, 1)[0], kSentinel);
  EXPECT_EQ(signals_[0], 1);
}

TEST_F(NetTest, Rx_PlainBackend_ZeroHeaderPrepended) {
  Start(false);
  uint64_t buf = AddRxBuffer(512);
  std::vector<uint8_t> frame = TestFrame(60, 2);
  EXPECT_TRUE(Receive(frame));
  net::Header hdr = rx_driver_.ReadObj<net::Header>(buf);
  EXPECT_EQ(hdr.flags, 0);
  EXPECT_EQ(hdr.gso_type, net::kGsoNone);
  EXPECT_EQ(hdr.num_buffers, 1);
  EXPECT_EQ(RxBytes(buf + 12, 60), frame);
}

TEST_F(NetTest, Rx_Mergeable_FrameSpreadOverThreeBuffers) {
  Start(true);
  uint64_t b0 = AddRxBuffer(1024), b1 = AddRxBuffer(1024), b2 = AddRxBuffer(1024);
  AddRxBuffer(1024);  // not needed
  std::vector<uint8_t> frame = TestFrame(3000, 5);
  EXPECT_TRUE(Receive(frame));
  std::vector<uint32_t> lens;
  while (auto used = rx_driver_.PopUsed()) lens.push_back(used->len);
  EXPECT_EQ(lens, (std::vector<uint32_t>{1024, 1024, 3012 - 2048}));
  EXPECT_EQ(rx_driver_.ReadObj<net::Header>(b0).num_buffers, 3);
  std::vector<uint8_t> got = RxBytes(b0 + 12, 1012);
  for (auto [addr, len] : {std::pair{b1, 1024u}, std::pair{b2, 3012u - 2048}}) {
    std::vector<uint8_t> part = RxBytes(addr, len);
    got.insert(got.end(), part.begin(), part.end());
  }
  EXPECT_EQ(got, frame);
}

TEST_F(NetTest, Rx_NoBuffers_FrameRefusedThenResumedOnKick) {
  Start(true);
  EXPECT_FALSE(Receive(TestFrame(60)));
  EXPECT_EQ(backend_->resumes, 0);
  AddRxBuffer(2048);
  device_->ProcessQueue(0);
  EXPECT_EQ(backend_->resumes, 1);
  EXPECT_TRUE(Receive(TestFrame(60)));
  EXPECT_TRUE(rx_driver_.PopUsed().has_value());
}

TEST_F(NetTest, Rx_Mergeable_PartialRoom_WaitsAndKeepsBuffers) {
  Start(true);
  AddRxBuffer(1024);
  std::vector<uint8_t> frame = TestFrame(1500);
  EXPECT_FALSE(Receive(frame));  // 1024 bytes of room for 1512
  EXPECT_FALSE(rx_driver_.PopUsed().has_value());
  AddRxBuffer(1024);
  device_->ProcessQueue(0);
  EXPECT_TRUE(Receive(frame));
  int used = 0;
  while (rx_driver_.PopUsed()) ++used;
  EXPECT_EQ(used, 2);
}

TEST_F(NetTest, Rx_Mergeable_WholeQueueTooSmall_FrameDropped) {
  Start(true);
  for (int i = 0; i < kSize; ++i) AddRxBuffer(64);  // 1 KiB in all
  EXPECT_TRUE(Receive(TestFrame(1500)));            // dropped, not deferred forever
  EXPECT_FALSE(rx_driver_.PopUsed().has_value());
  EXPECT_EQ(device_->counters().drops, 1u);
  EXPECT_TRUE(Receive(TestFrame(40)));  // a small frame still fits
  EXPECT_TRUE(rx_driver_.PopUsed().has_value());
}

TEST_F(NetTest, G24_RxBufferTooSmall_FrameDroppedBufferUntouchedAndReused) {
  Start(true, Bit(net::kFeatureMrgRxbuf));
  uint64_t buf = AddRxBuffer(100);
  EXPECT_TRUE(Receive(TestFrame(200)));  // dropped
  EXPECT_FALSE(rx_driver_.PopUsed().has_value());
  EXPECT_EQ(RxBytes(buf, 100), std::vector<uint8_t>(100, kSentinel));
  EXPECT_EQ(device_->counters().drops, 1u);
  std::vector<uint8_t> small = TestFrame(80, 4);
  EXPECT_TRUE(Receive(small));
  auto used = rx_driver_.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 92u);
  EXPECT_EQ(RxBytes(buf + 12, 80), small);
}

TEST_F(NetTest, Rx_Mergeable_ChainSmallerThanHeader_ReturnedEmpty) {
  Start(true);
  AddRxBuffer(8);
  AddRxBuffer(256);
  EXPECT_TRUE(Receive(TestFrame(60)));
  auto first = rx_driver_.PopUsed();
  auto second = rx_driver_.PopUsed();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->len, 0u);
  EXPECT_EQ(second->len, 72u);
}

TEST_F(NetTest, G25_RxGsoFrameGuestDidNotNegotiate_Dropped) {
  Start(true, Bit(net::kFeatureGuestTso4) | Bit(net::kFeatureGuestTso6));
  AddRxBuffer(4096);
  net::Header hdr = Hdr(net::kHdrFlagNeedsCsum, net::kGsoTcpv4, 1448, 34, 16);
  EXPECT_TRUE(Receive(TestFrame(3000), hdr));
  EXPECT_FALSE(rx_driver_.PopUsed().has_value());
  EXPECT_EQ(device_->counters().drops, 1u);
}

TEST_F(NetTest, Rx_SeveralFramesInOneTurn_OneInterrupt) {
  Start(true);
  for (int i = 0; i < 3; ++i) AddRxBuffer(256);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(backend_->sink(std::vector<uint8_t>(72, 0)));
  Run();
  EXPECT_EQ(signals_[0], 1);
  EXPECT_EQ(device_->counters().requests, 3u);
}

TEST_F(NetTest, Rx_BeforeActivation_FrameDropped) {
  Create(true);
  EXPECT_TRUE(backend_->sink(std::vector<uint8_t>(72, 0)));
  EXPECT_EQ(device_->counters().drops, 1u);
}

// --- Reset ---

TEST_F(NetTest, Reset_StopsProcessingAndLetsTheBackendResume) {
  Start(true);
  EXPECT_FALSE(Receive(TestFrame(60)));  // waiting for buffers
  device_->Reset();
  Run();
  EXPECT_EQ(backend_->resumes, 1);
  EXPECT_TRUE(Receive(TestFrame(60)));  // dropped while not live
  // A TX chain made available after reset is not touched.
  uint64_t f = tx_driver_.Alloc(80);
  tx_driver_.AddChain({{f, 80, false}});
  tx_driver_.Publish();
  device_->ProcessQueue(1);
  Run();
  EXPECT_TRUE(backend_->sent.empty());
  EXPECT_FALSE(tx_driver_.PopUsed().has_value());
}

TEST_F(NetTest, Reset_PendingTxDroppedNotCompleted) {
  Start(true);
  backend_->full = true;
  Transmit({}, TestFrame(64));
  device_->Reset();
  backend_->full = false;
  backend_->on_writable();
  Run();
  EXPECT_TRUE(backend_->sent.empty());
  EXPECT_FALSE(tx_driver_.PopUsed().has_value());
}

// --- Rate limits (R1): a frame over the limit stays where it is, and goes on the timer ---

RateLimitParams OneFramePerSecond() {
  return {.bytes = {}, .ops = {.rate = 1, .capacity = 1, .one_time_burst = 0}};
}

TEST_F(NetTest, Throttle_Tx_OverTheLimit_ChainBackInTheRing_SentOnTheTimer) {
  auto clock = std::make_shared<testing::FakeClock>();
  options_.tx_throttle = OneFramePerSecond();
  options_.throttle_time = testing::FakeTimeFactory(clock);
  Start(true);
  Transmit({}, TestFrame(60, 1));
  Transmit({}, TestFrame(60, 2));
  ASSERT_EQ(backend_->sent.size(), 1u);
  EXPECT_EQ(tx_queue_.in_flight(), 0);  // the second chain is back in the ring, not held
  EXPECT_EQ(clock->delay, 1000 * testing::kMs);
  clock->Fire();
  Run();
  ASSERT_EQ(backend_->sent.size(), 2u);
  EXPECT_EQ(backend_->sent[1].back(), TestFrame(60, 2).back());
  EXPECT_EQ(device_->counters().requests, 2u);  // counted once
  EXPECT_EQ(device_->counters().throttled, 1u);
}

TEST_F(NetTest, Throttle_Tx_Bps_WaitFollowsTheFrameLength) {
  auto clock = std::make_shared<testing::FakeClock>();
  // 1000 bytes/s, a 100-byte bucket: a 100-byte frame empties it, the next waits 100 ms.
  options_.tx_throttle = {.bytes = {.rate = 1000, .capacity = 100, .one_time_burst = 0}, .ops = {}};
  options_.throttle_time = testing::FakeTimeFactory(clock);
  Start(true);
  Transmit({}, TestFrame(100, 1));
  Transmit({}, TestFrame(100, 2));
  EXPECT_EQ(backend_->sent.size(), 1u);
  EXPECT_EQ(clock->delay, 100 * testing::kMs);
}

TEST_F(NetTest, Throttle_Rx_OverTheLimit_BackendKeepsTheFrame_ResumedOnTheTimer) {
  auto clock = std::make_shared<testing::FakeClock>();
  options_.rx_throttle = OneFramePerSecond();
  options_.throttle_time = testing::FakeTimeFactory(clock);
  Start(true, Bit(net::kFeatureMrgRxbuf));
  AddRxBuffer(2048);
  AddRxBuffer(2048);
  EXPECT_TRUE(Receive(TestFrame(60, 1)));
  EXPECT_FALSE(Receive(TestFrame(60, 2)));  // refused: the backend keeps it
  EXPECT_EQ(backend_->resumes, 0);
  EXPECT_EQ(device_->counters().drops, 0u);
  clock->Fire();
  Run();
  EXPECT_EQ(backend_->resumes, 1);
  EXPECT_TRUE(Receive(TestFrame(60, 2)));  // the backend delivers it again
  EXPECT_TRUE(rx_driver_.PopUsed().has_value());
  EXPECT_TRUE(rx_driver_.PopUsed().has_value());
}

TEST_F(NetTest, Throttle_Rx_NoRoom_FrameNotChargedTwice) {
  auto clock = std::make_shared<testing::FakeClock>();
  options_.rx_throttle = OneFramePerSecond();
  options_.throttle_time = testing::FakeTimeFactory(clock);
  Start(true);
  EXPECT_FALSE(Receive(TestFrame(60)));  // no guest buffers: refused, its token given back
  AddRxBuffer(2048);
  device_->ProcessQueue(0);
  EXPECT_EQ(backend_->resumes, 1);
  EXPECT_TRUE(Receive(TestFrame(60)));  // the same second: the one token is still there
  EXPECT_EQ(clock->arms, 0);
  EXPECT_TRUE(rx_driver_.PopUsed().has_value());
}

// A query right after a change sees it (x-kite-query-net-throttle after
// x-kite-set-net-throttle), though the gates get the new limits on the loop.
TEST_F(NetTest, Throttle_SetThrottle_ReportedAtOnce_BeforeTheLoopRuns) {
  Start(true);
  auto* net = static_cast<NetDevice*>(device_.get());
  net->SetThrottle(OneFramePerSecond(), RateLimitParams{});
  EXPECT_EQ(net->rx_throttle(), OneFramePerSecond());
  EXPECT_EQ(net->tx_throttle(), RateLimitParams{});
  Run();
  EXPECT_EQ(net->rx_throttle(), OneFramePerSecond());
}

TEST_F(NetTest, Throttle_SetThrottle_Unlimited_ResumesAtOnce) {
  auto clock = std::make_shared<testing::FakeClock>();
  options_.rx_throttle = options_.tx_throttle = OneFramePerSecond();
  options_.throttle_time = testing::FakeTimeFactory(clock);
  Start(true);
  Transmit({}, TestFrame(60, 1));
  Transmit({}, TestFrame(60, 2));
  ASSERT_EQ(backend_->sent.size(), 1u);
  auto* net = static_cast<NetDevice*>(device_.get());
  net->SetThrottle({}, {});
  Run();
  EXPECT_EQ(backend_->sent.size(), 2u);
  EXPECT_EQ(net->tx_throttle(), RateLimitParams{});
  clock->Fire();  // the old timer: refused, nothing happens twice
  Run();
  EXPECT_EQ(backend_->sent.size(), 2u);
}

}  // namespace
}  // namespace kite::virtio
