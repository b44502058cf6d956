// Unit tests of virtio-net's control queue, receive filter, queue pairs (multiqueue), MAC
// pinning and announce (src/virtio/net_ctrl.cc, net_ctrl_queue.cc and their use in net.cc,
// net_rx.cc, net_snapshot.cc): the pure command parser with a catalogue of malformed
// requests, then the device driven through real virtio::Queues by fake drivers, one fake
// backend per queue pair. No KVM, no root.
#include "virtio/net_ctrl.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net_test_frames.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/net.h"
#include "virtio/net_header.h"
#include "virtio/queue.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

using nettest::kGuestMac;
using testing::FakeBuffer;
using testing::FakeDriver;

constexpr uint16_t kSize = 16;
constexpr MacAddress kOtherMac{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
constexpr MacAddress kTableMac{0x52, 0x54, 0x00, 0x01, 0x02, 0x03};
constexpr MacAddress kGroupMac{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
constexpr MacAddress kOtherGroup{0x33, 0x33, 0x00, 0x00, 0x00, 0x01};
constexpr MacAddress kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

uint64_t Bit(int bit) {
  return FeatureBit(bit);
}

std::vector<uint8_t> Cmd(uint8_t cls, uint8_t cmd, std::vector<uint8_t> data = {}) {
  data.insert(data.begin(), {cls, cmd});
  return data;
}

void PutTable(std::vector<uint8_t>* out, uint32_t entries, const std::vector<MacAddress>& macs) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(entries >> (8 * i)));
  for (const MacAddress& mac : macs) out->insert(out->end(), mac.begin(), mac.end());
}

std::vector<uint8_t> MacTable(const std::vector<MacAddress>& uni,
                              const std::vector<MacAddress>& multi) {
  std::vector<uint8_t> data;
  PutTable(&data, static_cast<uint32_t>(uni.size()), uni);
  PutTable(&data, static_cast<uint32_t>(multi.size()), multi);
  return Cmd(net::kCtrlMac, net::kCtrlMacTableSet, data);
}

// An Ethernet frame to `dst` from `src`.
std::vector<uint8_t> FrameTo(const MacAddress& dst, const MacAddress& src = kOtherMac) {
  std::vector<uint8_t> frame = nettest::TestFrame(60);
  std::memcpy(frame.data(), dst.data(), 6);
  std::memcpy(frame.data() + 6, src.data(), 6);
  return frame;
}

constexpr uint64_t kAllCtrl = kNetCtrlFeatures | FeatureBit(net::kFeatureMq);

// --- The parser and the filter, pure ---

TEST(NetCtrlParse, RxMode_SetsFlags) {
  NetCtrlState s;
  NetCtrlLimits limits{kAllCtrl, 1, nullptr};
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0}), limits, &s), net::kCtrlOk);
  EXPECT_FALSE(s.filter.promisc);
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlRx, net::kCtrlRxAllmulti, {1}), limits, &s), net::kCtrlOk);
  EXPECT_TRUE(s.filter.allmulti);
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlRx, net::kCtrlRxNobcast, {7}), limits, &s), net::kCtrlOk);
  EXPECT_TRUE(s.filter.nobcast);
}

TEST(NetCtrlParse, MacTable_StoresBothTables) {
  NetCtrlState s;
  NetCtrlLimits limits{kAllCtrl, 1, nullptr};
  ASSERT_EQ(ApplyNetCtrl(MacTable({kTableMac}, {kGroupMac, kOtherGroup}), limits, &s),
            net::kCtrlOk);
  EXPECT_EQ(s.filter.uni, std::vector<MacAddress>{kTableMac});
  EXPECT_EQ(s.filter.multi, (std::vector<MacAddress>{kGroupMac, kOtherGroup}));
  EXPECT_FALSE(s.filter.uni_overflow || s.filter.multi_overflow);
}

TEST(NetCtrlParse, MacTable_OverQemuLimit_OverflowNotStored) {
  NetCtrlState s;
  NetCtrlLimits limits{kAllCtrl, 1, nullptr};
  std::vector<MacAddress> many(kMacTableEntries + 1, kTableMac);
  ASSERT_EQ(ApplyNetCtrl(MacTable(many, {kGroupMac}), limits, &s), net::kCtrlOk);
  EXPECT_TRUE(s.filter.uni_overflow);
  EXPECT_TRUE(s.filter.uni.empty());
  EXPECT_EQ(s.filter.multi.size(), 1u);
  // 60 unicast entries leave room for 4 multicast ones: 5 overflow.
  std::vector<MacAddress> uni(60, kTableMac), multi(5, kGroupMac);
  ASSERT_EQ(ApplyNetCtrl(MacTable(uni, multi), limits, &s), net::kCtrlOk);
  EXPECT_FALSE(s.filter.uni_overflow);
  EXPECT_TRUE(s.filter.multi_overflow);
  EXPECT_TRUE(s.filter.multi.empty());
}

TEST(NetCtrlParse, Pairs_Announce_MacAddr) {
  NetCtrlState s;
  s.status = net::kStatusLinkUp | net::kStatusAnnounce;
  NetCtrlLimits limits{kAllCtrl, 4, nullptr};
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {4, 0}), limits, &s),
            net::kCtrlOk);
  EXPECT_EQ(s.pairs, 4);
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlAnnounce, net::kCtrlAnnounceAck), limits, &s), net::kCtrlOk);
  EXPECT_EQ(s.status, net::kStatusLinkUp);
  std::vector<uint8_t> mac(kOtherMac.begin(), kOtherMac.end());
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, mac), limits, &s), net::kCtrlOk);
  EXPECT_EQ(s.mac, kOtherMac);
}

// The catalogue: each request is refused with VIRTIO_NET_ERR and changes nothing.
TEST(NetCtrlParse, Malformed_RefusedStateUnchanged) {
  std::vector<uint8_t> uni_header_only;  // a unicast table with no multicast table after it
  PutTable(&uni_header_only, 1, {kTableMac});
  std::vector<uint8_t> huge_count;  // 0xffffffff entries: 24 GiB claimed
  PutTable(&huge_count, 0xffffffff, {});
  PutTable(&huge_count, 0, {});
  std::vector<uint8_t> multi_short;  // one multicast entry announced, none given
  PutTable(&multi_short, 0, {});
  PutTable(&multi_short, 1, {});
  std::vector<uint8_t> trailing;  // both tables, then a stray byte
  PutTable(&trailing, 0, {});
  PutTable(&trailing, 0, {});
  trailing.push_back(0);
  std::vector<uint8_t> pinned(kOtherMac.begin(), kOtherMac.end());
  std::vector<uint8_t> group(kGroupMac.begin(), kGroupMac.end());
  struct Case {
    const char* what;
    std::vector<uint8_t> request;
    uint64_t features = kAllCtrl;
  };
  const std::vector<Case> cases = {
      {"empty", {}},
      {"class only", {net::kCtrlRx}},
      {"unknown class", Cmd(9, 0)},
      {"VLAN class (not offered)", Cmd(2, 0, {1, 0})},
      {"promisc without data", Cmd(net::kCtrlRx, net::kCtrlRxPromisc)},
      {"promisc with two bytes", Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {1, 1})},
      {"unknown rx command", Cmd(net::kCtrlRx, 6, {1})},
      {"alluni without CTRL_RX_EXTRA", Cmd(net::kCtrlRx, net::kCtrlRxAlluni, {1}),
       kAllCtrl & ~Bit(net::kFeatureCtrlRxExtra)},
      {"promisc without CTRL_RX", Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0}),
       kAllCtrl & ~Bit(net::kFeatureCtrlRx)},
      {"table without data", Cmd(net::kCtrlMac, net::kCtrlMacTableSet)},
      {"table without multicast part", Cmd(net::kCtrlMac, net::kCtrlMacTableSet, uni_header_only)},
      {"table count beyond the bytes", Cmd(net::kCtrlMac, net::kCtrlMacTableSet, huge_count)},
      {"multicast count beyond the bytes", Cmd(net::kCtrlMac, net::kCtrlMacTableSet, multi_short)},
      {"bytes after the tables", Cmd(net::kCtrlMac, net::kCtrlMacTableSet, trailing)},
      {"unknown mac command", Cmd(net::kCtrlMac, 2, pinned)},
      {"mac addr of 5 bytes", Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, {2, 0, 0, 0, 1})},
      {"multicast mac addr", Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, group)},
      {"zero mac addr", Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, std::vector<uint8_t>(6, 0))},
      {"mac addr without CTRL_MAC_ADDR", Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, pinned),
       kAllCtrl & ~Bit(net::kFeatureCtrlMacAddr)},
      {"announce ack with none pending", Cmd(net::kCtrlAnnounce, net::kCtrlAnnounceAck)},
      {"announce unknown command", Cmd(net::kCtrlAnnounce, 1)},
      {"zero pairs", Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {0, 0})},
      {"more pairs than the device", Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {3, 0})},
      {"pairs of one byte", Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {1})},
      {"RSS (not offered)", Cmd(net::kCtrlMq, 1, std::vector<uint8_t>(40, 0))},
      {"pairs without MQ", Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {1, 0}),
       kAllCtrl & ~Bit(net::kFeatureMq)},
  };
  for (const Case& c : cases) {
    NetCtrlState s;
    s.mac = kGuestMac;
    NetCtrlState before = s;
    NetCtrlLimits limits{c.features, 2, nullptr};
    EXPECT_EQ(ApplyNetCtrl(c.request, limits, &s), net::kCtrlErr) << c.what;
    EXPECT_EQ(s, before) << c.what;
  }
  // MAC pinning: only the pinned MAC may be set.
  NetCtrlState s;
  NetCtrlLimits pinned_limits{kAllCtrl, 1, &kGuestMac};
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, pinned), pinned_limits, &s),
            net::kCtrlErr);
  std::vector<uint8_t> own(kGuestMac.begin(), kGuestMac.end());
  EXPECT_EQ(ApplyNetCtrl(Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, own), pinned_limits, &s),
            net::kCtrlOk);
}

TEST(NetRxFilter, Decisions_AsQemuReceiveFilter) {
  RxFilter f;
  EXPECT_TRUE(RxFilterAccepts(f, kGuestMac, FrameTo(kOtherMac)));  // reset: promiscuous
  f.promisc = false;
  EXPECT_TRUE(RxFilterAccepts(f, kGuestMac, FrameTo(kGuestMac)));
  EXPECT_FALSE(RxFilterAccepts(f, kGuestMac, FrameTo(kOtherMac)));
  EXPECT_TRUE(RxFilterAccepts(f, kGuestMac, FrameTo(kBroadcastMac)));
  EXPECT_FALSE(RxFilterAccepts(f, kGuestMac, FrameTo(kGroupMac)));
  EXPECT_FALSE(RxFilterAccepts(f, kGuestMac, std::vector<uint8_t>{0x52, 0x54}));  // short
  f.uni = {kOtherMac};
  f.multi = {kGroupMac};
  EXPECT_TRUE(RxFilterAccepts(f, kGuestMac, FrameTo(kOtherMac)));
  EXPECT_TRUE(RxFilterAccepts(f, kGuestMac, FrameTo(kGroupMac)));
  EXPECT_FALSE(RxFilterAccepts(f, kGuestMac, FrameTo(kOtherGroup)));
  f.allmulti = true;
  EXPECT_TRUE(RxFilterAccepts(f, kGuestMac, FrameTo(kOtherGroup)));
  f.nomulti = true;  // nomulti wins over allmulti, but not over broadcast
  EXPECT_FALSE(RxFilterAccepts(f, kGuestMac, FrameTo(kGroupMac)));
  EXPECT_TRUE(RxFilterAccepts(f, kGuestMac, FrameTo(kBroadcastMac)));
  f.nobcast = true;
  EXPECT_FALSE(RxFilterAccepts(f, kGuestMac, FrameTo(kBroadcastMac)));
  f.nouni = true;  // not even our own MAC
  EXPECT_FALSE(RxFilterAccepts(f, kGuestMac, FrameTo(kGuestMac)));
  RxFilter overflow;
  overflow.promisc = false;
  overflow.uni_overflow = true;
  EXPECT_TRUE(RxFilterAccepts(overflow, kGuestMac, FrameTo(kTableMac)));
  EXPECT_FALSE(RxFilterAccepts(overflow, kGuestMac, FrameTo(kGroupMac)));
}

TEST(NetMacPinning, SourceMacSpoofed) {
  EXPECT_FALSE(SourceMacSpoofed(kOtherMac, FrameTo(kGuestMac, kOtherMac)));
  EXPECT_TRUE(SourceMacSpoofed(kGuestMac, FrameTo(kGuestMac, kOtherMac)));
  EXPECT_TRUE(SourceMacSpoofed(kGuestMac, std::vector<uint8_t>(11, 0)));
}

// --- The device ---

struct PairBackendState {
  std::vector<std::vector<uint8_t>> sent;
  NetBackend::FrameSink sink;
  std::vector<bool> enabled_calls;  // SetQueueEnabled arguments
};

class PairBackend final : public NetBackend {
 public:
  explicit PairBackend(std::shared_ptr<PairBackendState> s) : s_(std::move(s)) {}
  bool has_vnet_header() const override { return true; }
  uint64_t offload_features() const override { return 0; }
  Result<void> SetOffloads(uint64_t) override { return {}; }
  Result<bool> Send(std::span<const iovec> iov) override {
    s_->sent.push_back(nettest::Gather(iov));
    return true;
  }
  void StartReceive(FrameSink sink, std::function<void()>) override { s_->sink = std::move(sink); }
  void ResumeReceive() override {}
  void Stop() override {}
  Result<void> SetQueueEnabled(bool enabled) override {
    s_->enabled_calls.push_back(enabled);
    return {};
  }
  std::string description() const override { return "pair"; }
  NetBackendCounters counters() const override { return {}; }

 private:
  std::shared_ptr<PairBackendState> s_;
};

class NetCtrlDeviceTest : public ::testing::Test {
 protected:
  // A device with `pairs` queue pairs, activated with its features minus `without`.
  void Start(size_t pairs = 1, uint64_t without = 0, NetOptions options = {}) {
    std::vector<std::unique_ptr<NetBackend>> backends;
    for (size_t i = 0; i < pairs; ++i) {
      backends_.push_back(std::make_shared<PairBackendState>());
      backends.push_back(std::make_unique<PairBackend>(backends_.back()));
    }
    options.mac = kGuestMac;
    options.queue_size = kSize;
    auto dev = CreateVirtioNet(std::move(backends), options, &loop_);
    ASSERT_TRUE(dev.has_value()) << dev.error().message();
    device_ = *dev;
    device_->SetConfigNotifier([this] { ++config_notifications_; });
    size_t count = device_->queue_max_sizes().size();
    ASSERT_EQ(count, 2 * pairs + 1);
    drivers_.push_back(std::make_unique<FakeDriver>(
        testing::FakeDriverOptions{.queue_size = kSize, .low_size = 8ull << 20}));
    for (size_t q = 1; q < count; ++q) {
      drivers_.push_back(std::make_unique<FakeDriver>(drivers_[0].get(), kSize));
    }
    for (size_t q = 0; q < count; ++q) {
      queues_.push_back(std::make_unique<Queue>(kSize));
      drivers_[q]->Configure(queues_[q].get());
      ASSERT_TRUE(queues_[q]->Activate(&drivers_[0]->memory(), false, true));
      queue_ptrs_.push_back(queues_[q].get());
    }
    features_ = device_->device_features() & ~without;
    ASSERT_TRUE(device_->AcceptFeatures(features_));
    ActiveQueues active;
    active.memory = &drivers_[0]->memory();
    active.features = features_;
    active.queues = queue_ptrs_;
    active.signal_used = [this](uint16_t q) { ++signals_[q]; };
    active.mark_broken = [this](const std::string& why) { broken_.push_back(why); };
    ASSERT_TRUE(device_->Activate(std::move(active)));
    Run();
  }
  uint16_t CtrlIndex() const {
    return (features_ & Bit(net::kFeatureMq)) ? static_cast<uint16_t>(queues_.size() - 1) : 2;
  }
  // Sends one control request; returns the ack the device wrote (0xee: none).
  uint8_t Ctrl(const std::vector<uint8_t>& request) {
    FakeDriver& d = *drivers_[CtrlIndex()];
    uint64_t req = d.Alloc(static_cast<uint32_t>(std::max<size_t>(request.size(), 1)));
    if (!request.empty()) d.WriteBytes(req, request.data(), request.size());
    uint64_t ack = d.Alloc(1);
    d.WriteObj<uint8_t>(ack, 0xee);
    std::vector<FakeBuffer> chain;
    if (!request.empty()) chain.push_back({req, static_cast<uint32_t>(request.size()), false});
    chain.push_back({ack, 1, true});
    d.AddChain(chain);
    d.Publish();
    device_->ProcessQueue(CtrlIndex());
    Run();
    auto used = d.PopUsed();
    EXPECT_TRUE(used.has_value());
    if (used) {
      EXPECT_EQ(used->len, 1u);
    }
    return d.ReadObj<uint8_t>(ack);
  }
  uint64_t AddRx(size_t pair, uint32_t len = 2048) {
    FakeDriver& d = *drivers_[2 * pair];
    uint64_t addr = d.Alloc(len);
    d.AddChain({{addr, len, true}});
    d.Publish();
    return addr;
  }
  // The backend of `pair` hands the device a frame; true if the device took it.
  bool Deliver(size_t pair, const std::vector<uint8_t>& frame) {
    std::vector<uint8_t> bytes(kNetHeaderSize, 0);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    bool taken = backends_[pair]->sink(bytes);
    Run();
    return taken;
  }
  std::optional<UsedElement> RxUsed(size_t pair) { return drivers_[2 * pair]->PopUsed(); }
  void Transmit(size_t pair, const std::vector<uint8_t>& frame) {
    FakeDriver& d = *drivers_[2 * pair + 1];
    net::Header hdr{};
    uint64_t h = d.Alloc(sizeof(hdr));
    d.WriteObj(h, hdr);
    uint64_t f = d.Alloc(static_cast<uint32_t>(frame.size()));
    d.WriteBytes(f, frame.data(), frame.size());
    d.AddChain({{h, sizeof(hdr), false}, {f, static_cast<uint32_t>(frame.size()), false}});
    d.Publish();
    device_->ProcessQueue(static_cast<uint16_t>(2 * pair + 1));
    Run();
  }
  uint16_t ConfigStatus() {
    uint8_t b[2];
    device_->ReadConfig(6, b);
    return static_cast<uint16_t>(b[0] | b[1] << 8);
  }
  void Run() {
    loop_.restart();
    loop_.poll();
  }
  NetDevice& net() { return static_cast<NetDevice&>(*device_); }

  asio::io_context loop_;
  std::vector<std::shared_ptr<PairBackendState>> backends_;
  std::shared_ptr<NetDevice> device_;
  std::vector<std::unique_ptr<FakeDriver>> drivers_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<Queue*> queue_ptrs_;
  uint64_t features_ = 0;
  std::map<uint16_t, int> signals_;
  std::vector<std::string> broken_;
  int config_notifications_ = 0;
};

TEST_F(NetCtrlDeviceTest, Features_CtrlOfferedMqOnlyWithPairs) {
  Start(1);
  uint64_t f = device_->device_features();
  EXPECT_EQ(f & kNetCtrlFeatures, kNetCtrlFeatures);
  EXPECT_EQ(f & (Bit(net::kFeatureMq) | Bit(net::kFeatureCtrlVlan)), 0u);
  EXPECT_FALSE(device_->AcceptFeatures(f & ~Bit(net::kFeatureCtrlVq)));
  EXPECT_FALSE(device_->AcceptFeatures(f & ~Bit(net::kFeatureCtrlRx)));  // RX_EXTRA needs it
}

TEST_F(NetCtrlDeviceTest, PromiscOff_OtherUnicastFilteredOwnAndBroadcastDelivered) {
  Start();
  for (int i = 0; i < 3; ++i) AddRx(0);
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0})), net::kCtrlOk);
  EXPECT_TRUE(Deliver(0, FrameTo(kOtherMac)));
  EXPECT_FALSE(RxUsed(0).has_value());
  EXPECT_EQ(net().net_counters().rx_filtered, 1u);
  EXPECT_EQ(device_->counters().drops, 0u);  // filtered is not a drop
  EXPECT_TRUE(Deliver(0, FrameTo(kGuestMac)));
  EXPECT_TRUE(RxUsed(0).has_value());
  EXPECT_TRUE(Deliver(0, FrameTo(kBroadcastMac)));
  EXPECT_TRUE(RxUsed(0).has_value());
}

TEST_F(NetCtrlDeviceTest, MacTable_EntriesDeliveredOthersFiltered) {
  Start();
  for (int i = 0; i < 4; ++i) AddRx(0);
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0})), net::kCtrlOk);
  ASSERT_EQ(Ctrl(MacTable({kTableMac}, {kGroupMac})), net::kCtrlOk);
  Deliver(0, FrameTo(kTableMac));
  EXPECT_TRUE(RxUsed(0).has_value());
  Deliver(0, FrameTo(kGroupMac));
  EXPECT_TRUE(RxUsed(0).has_value());
  Deliver(0, FrameTo(kOtherGroup));
  EXPECT_FALSE(RxUsed(0).has_value());
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlRx, net::kCtrlRxAllmulti, {1})), net::kCtrlOk);
  Deliver(0, FrameTo(kOtherGroup));
  EXPECT_TRUE(RxUsed(0).has_value());
}

TEST_F(NetCtrlDeviceTest, MalformedRequests_ErrNotBroken) {
  Start();
  EXPECT_EQ(Ctrl({}), net::kCtrlErr);
  EXPECT_EQ(Ctrl(Cmd(7, 7)), net::kCtrlErr);
  EXPECT_EQ(Ctrl(Cmd(net::kCtrlMac, net::kCtrlMacTableSet, {0xff, 0xff, 0xff, 0xff})),
            net::kCtrlErr);
  EXPECT_EQ(Ctrl(std::vector<uint8_t>(70000, 0)), net::kCtrlErr);  // beyond 64 KiB
  // No writable byte for the ack: returned unanswered (length 0).
  FakeDriver& d = *drivers_[CtrlIndex()];
  uint64_t req = d.Alloc(3);
  d.WriteBytes(req, Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0}).data(), 3);
  d.AddChain({{req, 3, false}});
  d.Publish();
  device_->ProcessQueue(CtrlIndex());
  Run();
  auto used = d.PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(net().net_counters().ctrl_errors, 5u);
  EXPECT_TRUE(broken_.empty());
  // The unanswered promisc-off did not apply: everything is still received.
  AddRx(0);
  Deliver(0, FrameTo(kOtherMac));
  EXPECT_TRUE(RxUsed(0).has_value());
}

TEST_F(NetCtrlDeviceTest, MacAddrSet_ChangesConfigAndFilter) {
  Start();
  std::vector<uint8_t> mac(kOtherMac.begin(), kOtherMac.end());
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, mac)), net::kCtrlOk);
  uint8_t config[6];
  device_->ReadConfig(0, config);
  EXPECT_EQ(0, std::memcmp(config, kOtherMac.data(), 6));
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0})), net::kCtrlOk);
  AddRx(0);
  Deliver(0, FrameTo(kGuestMac));  // the old MAC
  EXPECT_FALSE(RxUsed(0).has_value());
  Deliver(0, FrameTo(kOtherMac));
  EXPECT_TRUE(RxUsed(0).has_value());
  // A reset goes back to the configured MAC and to promiscuous.
  device_->Reset();
  device_->ReadConfig(0, config);
  EXPECT_EQ(0, std::memcmp(config, kGuestMac.data(), 6));
}

TEST_F(NetCtrlDeviceTest, MacPinning_SpoofedSourceDroppedCounted) {
  NetOptions options;
  options.mac_pinning = true;
  Start(1, 0, options);
  Transmit(0, FrameTo(kBroadcastMac, kGuestMac));
  Transmit(0, FrameTo(kBroadcastMac, kOtherMac));
  ASSERT_EQ(backends_[0]->sent.size(), 1u);
  EXPECT_EQ(0, std::memcmp(backends_[0]->sent[0].data() + kNetHeaderSize + 6, kGuestMac.data(), 6));
  EXPECT_EQ(net().net_counters().tx_spoofed, 1u);
  EXPECT_EQ(device_->counters().drops, 1u);
  std::optional<UsedElement> a = drivers_[1]->PopUsed(), b = drivers_[1]->PopUsed();
  EXPECT_TRUE(a.has_value() && b.has_value());  // both chains back to the guest
  std::vector<uint8_t> other(kOtherMac.begin(), kOtherMac.end());
  EXPECT_EQ(Ctrl(Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, other)), net::kCtrlErr);
}

TEST_F(NetCtrlDeviceTest, NoPinning_AnySourceSent) {
  Start();
  Transmit(0, FrameTo(kBroadcastMac, kOtherMac));
  EXPECT_EQ(backends_[0]->sent.size(), 1u);
  EXPECT_EQ(net().net_counters().tx_spoofed, 0u);
}

TEST_F(NetCtrlDeviceTest, Multiqueue_PairsSetServesPairK) {
  Start(3);
  EXPECT_NE(features_ & Bit(net::kFeatureMq), 0u);
  uint8_t pairs[2];
  device_->ReadConfig(8, pairs);
  EXPECT_EQ(pairs[0], 3);
  EXPECT_EQ(net().pairs_in_use(), 1);
  // Pairs 1 and 2 idle until VQ_PAIRS_SET: their backend queues detached.
  EXPECT_EQ(backends_[1]->enabled_calls, std::vector<bool>{false});
  EXPECT_EQ(backends_[2]->enabled_calls, std::vector<bool>{false});
  EXPECT_TRUE(backends_[0]->enabled_calls.empty());
  AddRx(1);
  Deliver(1, FrameTo(kGuestMac));
  EXPECT_FALSE(RxUsed(1).has_value());  // not in use: dropped
  Transmit(2, FrameTo(kBroadcastMac, kGuestMac));
  EXPECT_TRUE(backends_[2]->sent.empty());  // not in use: not served

  ASSERT_EQ(Ctrl(Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {3, 0})), net::kCtrlOk);
  EXPECT_EQ(net().pairs_in_use(), 3);
  EXPECT_EQ(backends_[1]->enabled_calls, (std::vector<bool>{false, true}));
  EXPECT_EQ(backends_[2]->sent.size(), 1u);  // the waiting chain went out once in use
  Deliver(1, FrameTo(kGuestMac));
  auto used = RxUsed(1);
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, kNetHeaderSize + 60);
  EXPECT_GE(signals_[2], 1);  // pair 1's RX queue is queue 2
  EXPECT_FALSE(RxUsed(0).has_value());
  Transmit(1, FrameTo(kBroadcastMac, kGuestMac));
  EXPECT_EQ(backends_[1]->sent.size(), 1u);
  EXPECT_TRUE(backends_[0]->sent.empty());

  ASSERT_EQ(Ctrl(Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {1, 0})), net::kCtrlOk);
  EXPECT_EQ(backends_[2]->enabled_calls, (std::vector<bool>{false, true, false}));
  Transmit(1, FrameTo(kBroadcastMac, kGuestMac));
  EXPECT_EQ(backends_[1]->sent.size(), 1u);  // idle again
  EXPECT_EQ(Ctrl(Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {4, 0})), net::kCtrlErr);
}

TEST_F(NetCtrlDeviceTest, Multiqueue_NotNegotiated_CtrlQueueIsTwo) {
  Start(2, Bit(net::kFeatureMq));
  EXPECT_EQ(CtrlIndex(), 2);
  EXPECT_EQ(Ctrl(Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0})), net::kCtrlOk);
  EXPECT_EQ(Ctrl(Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {2, 0})), net::kCtrlErr);
}

TEST_F(NetCtrlDeviceTest, Announce_GuestAnnounce_StatusInterruptAck) {
  Start();
  net().Announce({.initial = 1, .max = 1, .rounds = 1, .step = 1});
  Run();
  EXPECT_EQ(config_notifications_, 1);
  EXPECT_EQ(ConfigStatus(), net::kStatusLinkUp | net::kStatusAnnounce);
  EXPECT_TRUE(backends_[0]->sent.empty());  // the guest announces, not the device
  EXPECT_EQ(Ctrl(Cmd(net::kCtrlAnnounce, net::kCtrlAnnounceAck)), net::kCtrlOk);
  EXPECT_EQ(ConfigStatus(), net::kStatusLinkUp);
  EXPECT_EQ(Ctrl(Cmd(net::kCtrlAnnounce, net::kCtrlAnnounceAck)), net::kCtrlErr);
}

TEST_F(NetCtrlDeviceTest, Announce_WithoutGuestAnnounce_RarpRounds) {
  Start(1, Bit(net::kFeatureGuestAnnounce));
  net().Announce({.initial = 1, .max = 2, .rounds = 3, .step = 1});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (backends_[0]->sent.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    loop_.restart();
    loop_.run_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(backends_[0]->sent.size(), 3u);
  const std::vector<uint8_t>& rarp = backends_[0]->sent[0];
  ASSERT_EQ(rarp.size(), kNetHeaderSize + 60);
  const uint8_t* eth = rarp.data() + kNetHeaderSize;
  EXPECT_EQ(0, std::memcmp(eth, kBroadcastMac.data(), 6));
  EXPECT_EQ(0, std::memcmp(eth + 6, kGuestMac.data(), 6));
  EXPECT_EQ(eth[12], 0x80);  // ethertype 0x8035
  EXPECT_EQ(eth[13], 0x35);
  EXPECT_EQ(eth[21], 3);  // reverse request
  EXPECT_EQ(config_notifications_, 0);
  EXPECT_EQ(net().net_counters().announces, 3u);
}

TEST_F(NetCtrlDeviceTest, AnnounceParams_QemuRanges) {
  EXPECT_TRUE(CheckAnnounceParams({}));
  EXPECT_FALSE(CheckAnnounceParams({.initial = 0}));
  EXPECT_FALSE(CheckAnnounceParams({.max = 100001}));
  EXPECT_FALSE(CheckAnnounceParams({.rounds = 0}));
  EXPECT_FALSE(CheckAnnounceParams({.step = 10001}));
}

TEST_F(NetCtrlDeviceTest, State_SaveRestoreSave_FilterPairsMacKept) {
  Start(2);
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlRx, net::kCtrlRxPromisc, {0})), net::kCtrlOk);
  ASSERT_EQ(Ctrl(MacTable({kTableMac}, {kGroupMac})), net::kCtrlOk);
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlMq, net::kCtrlMqVqPairsSet, {2, 0})), net::kCtrlOk);
  std::vector<uint8_t> mac(kOtherMac.begin(), kOtherMac.end());
  ASSERT_EQ(Ctrl(Cmd(net::kCtrlMac, net::kCtrlMacAddrSet, mac)), net::kCtrlOk);
  std::vector<uint8_t> saved = device_->SaveDeviceState();

  std::vector<std::unique_ptr<NetBackend>> backends;
  backends.push_back(std::make_unique<PairBackend>(std::make_shared<PairBackendState>()));
  backends.push_back(std::make_unique<PairBackend>(std::make_shared<PairBackendState>()));
  auto fresh =
      CreateVirtioNet(std::move(backends), {.mac = kGuestMac, .queue_size = kSize}, &loop_);
  ASSERT_TRUE(fresh.has_value());
  ASSERT_TRUE((*fresh)->RestoreDeviceState(saved));
  EXPECT_EQ((*fresh)->SaveDeviceState(), saved);
  EXPECT_EQ((*fresh)->pairs_in_use(), 2);
  uint8_t config[6];
  (*fresh)->ReadConfig(0, config);
  EXPECT_EQ(0, std::memcmp(config, kOtherMac.data(), 6));

  // A device of one pair cannot take a state that uses two; bad bytes change nothing.
  auto single = CreateVirtioNet(std::make_unique<PairBackend>(std::make_shared<PairBackendState>()),
                                {.mac = kGuestMac, .queue_size = kSize}, &loop_);
  ASSERT_TRUE(single.has_value());
  std::vector<uint8_t> before = (*single)->SaveDeviceState();
  EXPECT_FALSE((*single)->RestoreDeviceState(saved));
  std::vector<uint8_t> bad = saved;
  bad[12] = 70;  // more unicast entries than the table holds
  EXPECT_FALSE((*fresh)->RestoreDeviceState(bad));
  bad = saved;
  bad.pop_back();
  EXPECT_FALSE((*fresh)->RestoreDeviceState(bad));
  bad = saved;
  bad[1] = 0x04;  // an unknown status bit
  EXPECT_FALSE((*fresh)->RestoreDeviceState(bad));
  bad = saved;
  bad[3] = 0x01;  // a multicast MAC
  EXPECT_FALSE((*fresh)->RestoreDeviceState(bad));
  EXPECT_EQ((*single)->SaveDeviceState(), before);
  EXPECT_EQ((*fresh)->SaveDeviceState(), saved);
  // Version 1 (status only) still restores.
  EXPECT_TRUE((*single)->RestoreDeviceState(std::vector<uint8_t>{1, 1, 0}));
}

}  // namespace
}  // namespace kite::virtio
