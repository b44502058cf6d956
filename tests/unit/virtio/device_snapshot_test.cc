// One snapshot test suite for every virtio device (crosvm's suspendable_tests idea, with real
// assertions): the device behind a real MmioTransport is activated through its registers,
// serves requests, is quiesced with requests left available (kicked while quiesced), saved,
// restored into a FRESH transport + device (fresh backend, same guest memory and disk) and
// saved again; then the restored device must serve the waiting requests after Resume(), with
// used indices that continue, raise an interrupt, and serve new requests.
//
// A device joins with a traits struct: Make (a fresh device), the queues that take requests,
// Add (a request, not yet published) and Done (the request's outcome is right), Prime (extra
// state before the quiesce, e.g. net's popped receive buffers) and AfterResume (checks on it).
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <cstring>
#include <memory>
#include <vector>

#include "block_test_util.h"
#include "net_test_frames.h"
#include "snapshot_harness.h"
#include "testing/temp_dir.h"
#include "virtio/balloon.h"
#include "virtio/block.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "virtio/vsock_packet.h"

namespace kite::virtio {
namespace {

using kite::testing::FakeDriver;
using snaptest::LoopThread;
using snaptest::TransportHarness;

// A request as a traits struct laid it out: its head and where its results go.
struct Req {
  uint16_t head = 0;
  uint64_t a = 0;  // device-specific addresses
  uint64_t b = 0;
  int seq = 0;
};

struct BlkTraits {
  static constexpr uint16_t kSize = 16;
  std::shared_ptr<testing::MemDisk> disk = std::make_shared<testing::MemDisk>(1 << 20);

  std::shared_ptr<VirtioDevice> Make(asio::io_context* loop) {
    BlockOptions options;
    options.queue_size = kSize;
    options.io_workers = 2;
    return *CreateVirtioBlock(disk, options, loop);
  }
  std::vector<uint16_t> WorkQueues() const { return {0}; }
  // A 512-byte write of bytes `seq` to sector `seq`.
  Req Add(FakeDriver& d, uint16_t, int seq) {
    Req r{.seq = seq};
    uint64_t header = d.Alloc(sizeof(blk::RequestHeader));
    d.WriteObj(header, blk::RequestHeader{blk::kTypeOut, 0, static_cast<uint64_t>(seq)});
    r.a = d.Alloc(512);
    std::vector<uint8_t> data(512, static_cast<uint8_t>(seq));
    d.WriteBytes(r.a, data.data(), data.size());
    r.b = d.Alloc(1);
    d.WriteObj<uint8_t>(r.b, 0xff);
    r.head = d.AddChain(
        {{header, sizeof(blk::RequestHeader), false}, {r.a, 512, false}, {r.b, 1, true}});
    return r;
  }
  void Done(FakeDriver& d, const Req& r, const UsedElement& used) {
    EXPECT_EQ(used.len, 1u);
    EXPECT_EQ(d.ReadObj<uint8_t>(r.b), blk::kStatusOk);
    EXPECT_EQ(disk->Bytes(512ull * r.seq, 512),
              std::vector<uint8_t>(512, static_cast<uint8_t>(r.seq)));
  }
  void Prime(TransportHarness&) {}
  void AfterResume(TransportHarness&) {}
};

struct RngTraits {
  std::shared_ptr<VirtioDevice> Make(asio::io_context* loop) { return *CreateVirtioRng(loop); }
  std::vector<uint16_t> WorkQueues() const { return {0}; }
  Req Add(FakeDriver& d, uint16_t, int seq) {
    Req r{.seq = seq};
    r.a = d.Alloc(64);
    std::vector<uint8_t> fill(64, 0xa5);
    d.WriteBytes(r.a, fill.data(), fill.size());
    r.head = d.AddChain({{r.a, 64, true}});
    return r;
  }
  void Done(FakeDriver& d, const Req& r, const UsedElement& used) {
    EXPECT_EQ(used.len, 64u);
    std::vector<uint8_t> bytes(64);
    d.ReadBytes(r.a, bytes.data(), bytes.size());
    EXPECT_NE(bytes, std::vector<uint8_t>(64, 0xa5));
  }
  void Prime(TransportHarness&) {}
  void AfterResume(TransportHarness&) {}
};

// Requests are transmitted frames (queue 1). Prime leaves two receive buffers popped: a frame
// larger than both arrives (MRG_RXBUF) and waits for more; the quiesce gives them back.
struct NetTraits {
  static constexpr uint16_t kSize = 16;
  std::shared_ptr<snaptest::NetBackendState> backend;
  std::vector<uint16_t> rx_heads;

  std::shared_ptr<VirtioDevice> Make(asio::io_context* loop) {
    backend = std::make_shared<snaptest::NetBackendState>();  // fresh per device
    NetOptions options{.mac = nettest::kGuestMac, .queue_size = kSize};
    return *CreateVirtioNet(snaptest::MakeFakeNetBackend(backend), options, loop);
  }
  std::vector<uint16_t> WorkQueues() const { return {1}; }
  Req Add(FakeDriver& d, uint16_t, int seq) {
    Req r{.seq = seq};
    net::Header hdr{};
    uint64_t h = d.Alloc(sizeof(hdr));
    d.WriteObj(h, hdr);
    std::vector<uint8_t> frame = nettest::TestFrame(60, static_cast<uint8_t>(seq));
    r.a = d.Alloc(static_cast<uint32_t>(frame.size()));
    d.WriteBytes(r.a, frame.data(), frame.size());
    r.head = d.AddChain({{h, sizeof(hdr), false}, {r.a, 60, false}});
    return r;
  }
  void Done(FakeDriver&, const Req& r, const UsedElement& used) {
    EXPECT_EQ(used.len, 0u);
    std::vector<uint8_t> frame = nettest::TestFrame(60, static_cast<uint8_t>(r.seq));
    bool found = false;
    for (const auto& sent : backend->sent) {
      found |= sent.size() == 12 + frame.size() &&
               std::memcmp(sent.data() + 12, frame.data(), frame.size()) == 0;
    }
    EXPECT_TRUE(found) << "frame " << r.seq << " not sent";
  }
  void Prime(TransportHarness& h) {
    FakeDriver& rx = h.driver(0);
    for (int i = 0; i < 2; ++i) rx_heads.push_back(rx.AddChain({{rx.Alloc(256), 256, true}}));
    rx.Publish();
    std::vector<uint8_t> big(12 + 1500, 0);  // zero header, then the frame
    EXPECT_FALSE(backend->sink(big));        // no room: both buffers held
    h.Poll();
    EXPECT_EQ(rx.used_idx(), 0);
  }
  void AfterResume(TransportHarness& h) {
    // The guest's receive buffers were given back: a new frame lands in the first of them.
    std::vector<uint8_t> small(12 + 60, 0x11);
    std::memset(small.data(), 0, 12);
    EXPECT_TRUE(backend->sink(small));
    std::optional<UsedElement> used;
    EXPECT_TRUE(h.RunUntil([&] { return (used = h.driver(0).PopUsed()).has_value(); }));
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->id, rx_heads.at(0));
    EXPECT_EQ(used->len, 72u);
  }
};

// Requests are guest connection requests on tx (queue 1) to a port nothing listens on: each is
// consumed (used length 0) and answered with a RST on rx. Each device listens on a socket of
// its own (a restore makes a new one, as a new process would).
struct VsockTraits {
  kite::testing::TempDir dir;
  int made = 0;

  std::shared_ptr<VirtioDevice> Make(asio::io_context* loop) {
    return *CreateVirtioVsock({3, dir.File("v" + std::to_string(made++))}, loop);
  }
  std::vector<uint16_t> WorkQueues() const { return {1}; }
  Req Add(FakeDriver& d, uint16_t, int seq) {
    Req r{.seq = seq};
    vsock::Header h{};
    h.src_cid = 3;
    h.dst_cid = vsock::kHostCid;
    h.src_port = 1000 + static_cast<uint32_t>(seq);
    h.dst_port = 9;
    h.type = vsock::kTypeStream;
    h.op = vsock::kOpRequest;
    r.a = d.Alloc(sizeof(h));
    d.WriteObj(r.a, h);
    r.head = d.AddChain({{r.a, sizeof(h), false}});
    return r;
  }
  void Done(FakeDriver&, const Req&, const UsedElement& used) { EXPECT_EQ(used.len, 0u); }
  void Prime(TransportHarness&) {}
  void AfterResume(TransportHarness&) {}
};

// Multiqueue with the control queue: two queue pairs (queues 0-3) and the control queue (4).
// Requests are transmitted frames on pair 0 (queue 1) and control requests on queue 4: the
// first served (before the quiesce) puts pair 1 into use (VQ_PAIRS_SET 2), the others set a
// MAC table of one entry. After the restore pair 1 must still be in use (device state) and
// serve frames on queue 3 to its own backend. Prime: net's held receive buffers, on pair 0.
struct NetMqTraits {
  static constexpr uint16_t kSize = 16;
  std::vector<std::shared_ptr<snaptest::NetBackendState>> backends;
  NetTraits pair0;  // its Add, Done and Prime for pair 0

  std::shared_ptr<VirtioDevice> Make(asio::io_context* loop) {
    backends = {std::make_shared<snaptest::NetBackendState>(),
                std::make_shared<snaptest::NetBackendState>()};
    pair0.backend = backends[0];
    std::vector<std::unique_ptr<NetBackend>> queues;
    for (auto& b : backends) queues.push_back(snaptest::MakeFakeNetBackend(b));
    NetOptions options{.mac = nettest::kGuestMac, .queue_size = kSize};
    return *CreateVirtioNet(std::move(queues), options, loop);
  }
  std::vector<uint16_t> WorkQueues() const { return {1, 4}; }
  Req Add(FakeDriver& d, uint16_t q, int seq) {
    if (q != 4) return pair0.Add(d, q, seq);
    std::vector<uint8_t> request =
        seq == 2 ? std::vector<uint8_t>{net::kCtrlMq, net::kCtrlMqVqPairsSet, 2, 0}
                 : std::vector<uint8_t>{net::kCtrlMac,
                                        net::kCtrlMacTableSet,
                                        1,
                                        0,
                                        0,
                                        0,
                                        0x52,
                                        0x54,
                                        0,
                                        0,
                                        0,
                                        static_cast<uint8_t>(seq),
                                        0,
                                        0,
                                        0,
                                        0};
    Req r{.seq = seq};
    r.a = d.Alloc(static_cast<uint32_t>(request.size()));
    d.WriteBytes(r.a, request.data(), request.size());
    r.b = d.Alloc(1);  // the ack
    d.WriteObj<uint8_t>(r.b, 0xee);
    r.head = d.AddChain({{r.a, static_cast<uint32_t>(request.size()), false}, {r.b, 1, true}});
    return r;
  }
  void Done(FakeDriver& d, const Req& r, const UsedElement& used) {
    if (r.b == 0) return pair0.Done(d, r, used);  // a frame (NetTraits::Add sets only a)
    EXPECT_EQ(used.len, 1u);
    EXPECT_EQ(d.ReadObj<uint8_t>(r.b), net::kCtrlOk) << "control request " << r.seq;
  }
  void Prime(TransportHarness& h) { pair0.Prime(h); }
  void AfterResume(TransportHarness& h) {
    EXPECT_EQ(dynamic_cast<NetDevice&>(h.device()).pairs_in_use(), 2);
    pair0.backend = backends[1];  // pair 1: queue 3, its own backend
    Req r = pair0.Add(h.driver(3), 3, 99);
    h.Kick(3);
    std::optional<UsedElement> used;
    EXPECT_TRUE(h.RunUntil([&] { return (used = h.driver(3).PopUsed()).has_value(); }));
    if (used) pair0.Done(h.driver(3), r, *used);
    pair0.backend = backends[0];
  }
};

// Requests inflate one touched page each (its host memory goes: it reads zero). Prime leaves a
// statistics buffer held; the quiesce gives it back and the restored device reads it again.
// The target and actual survive.
struct BalloonTraits {
  // Not owned: the fixture destroys the devices before their loop, and the balloon's timers
  // must go first (the traits outlive the loop).
  std::weak_ptr<BalloonDevice> made;
  std::shared_ptr<BalloonDevice> device() const { return made.lock(); }
  std::shared_ptr<VirtioDevice> Make(asio::io_context* loop) {
    BalloonOptions options;
    options.target_pages = 1000;
    options.free_page_reporting = true;
    std::shared_ptr<BalloonDevice> device = *CreateVirtioBalloon(options, loop);
    made = device;
    return device;
  }
  std::vector<uint16_t> WorkQueues() const { return {0}; }
  Req Add(FakeDriver& d, uint16_t, int seq) {
    Req r{.seq = seq};
    r.a = (d.Alloc(2 * 4096) + 4095) / 4096 * 4096;
    std::vector<uint8_t> page(4096, 0x5a);
    d.WriteBytes(r.a, page.data(), page.size());
    r.b = d.Alloc(4);
    d.WriteObj<uint32_t>(r.b, static_cast<uint32_t>(r.a / 4096));
    r.head = d.AddChain({{r.b, 4, false}});
    return r;
  }
  void Done(FakeDriver& d, const Req& r, const UsedElement& used) {
    EXPECT_EQ(used.len, 0u);
    EXPECT_EQ(d.ReadObj<uint8_t>(r.a), 0);
  }
  void Prime(TransportHarness& h) {
    device()->SetTarget(4321);
    uint32_t actual = 1234;  // as the driver writes it
    h.Write32(mmio::kConfig + balloon::kConfigActual, actual);
    FakeDriver& stats = h.driver(2);
    uint8_t entry[10] = {4, 0, 0x00, 0x10};  // free memory: 4096 bytes
    uint64_t buf = stats.Alloc(sizeof(entry));
    stats.WriteBytes(buf, entry, sizeof(entry));
    stats.AddChain({{buf, sizeof(entry), false}});
    h.Kick(2);
    EXPECT_TRUE(h.RunUntil([&] { return device()->stats().values[4] == 4096; }));
  }
  void AfterResume(TransportHarness& h) {
    EXPECT_EQ(device()->target(), 4321u);
    EXPECT_EQ(device()->actual(), 1234u);
    EXPECT_TRUE(h.RunUntil([&] { return device()->stats().values[4] == 4096; }));
    EXPECT_FALSE(h.driver(2).PopUsed().has_value());  // held again, not returned
  }
};

template <typename T>
class DeviceSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::shared_ptr<VirtioDevice> device = traits_.Make(&loop_);
    std::vector<uint16_t> sizes = device->queue_max_sizes();
    drivers_.push_back(std::make_unique<FakeDriver>(
        kite::testing::FakeDriverOptions{.queue_size = std::min<uint16_t>(sizes[0], 64)}));
    for (size_t q = 1; q < sizes.size(); ++q) {
      drivers_.push_back(
          std::make_unique<FakeDriver>(drivers_[0].get(), std::min<uint16_t>(sizes[q], 64)));
    }
    a_ = std::make_unique<TransportHarness>(device, Drivers(), &loop_);
    ASSERT_TRUE(a_->Init());
  }
  std::vector<FakeDriver*> Drivers() {
    std::vector<FakeDriver*> out;
    for (auto& d : drivers_) out.push_back(d.get());
    return out;
  }
  // Adds one request per work queue, kicks, waits for and checks its used element.
  void Serve(TransportHarness& h) {
    for (uint16_t q : traits_.WorkQueues()) {
      Req r = traits_.Add(h.driver(q), q, seq_++);
      h.Kick(q);
      ExpectDone(h, q, r);
    }
  }
  void ExpectDone(TransportHarness& h, uint16_t q, const Req& r) {
    std::optional<UsedElement> used;
    ASSERT_TRUE(h.RunUntil([&] { return (used = h.driver(q).PopUsed()).has_value(); }))
        << "request " << r.seq << " on queue " << q << " not completed";
    EXPECT_EQ(used->id, r.head) << "used id is not the request's head";
    traits_.Done(h.driver(q), r, *used);
  }
  void Quiesce(TransportHarness& h) {
    LoopThread loop(&loop_);  // blk's quiesce waits for completions delivered by the loop
    Result<void> q = h.transport().Quiesce();
    ASSERT_TRUE(q) << q.error().message();
  }
  // Served requests, primed state, quiesce, one request per work queue published and kicked
  // while quiesced (not served), save.
  TransportState QuiesceWithPending() {
    Serve(*a_);
    traits_.Prime(*a_);
    Quiesce(*a_);
    for (uint16_t q : traits_.WorkQueues()) {
      pending_.push_back(traits_.Add(a_->driver(q), q, seq_++));
      a_->Kick(q);
    }
    a_->Poll();
    for (uint16_t q : traits_.WorkQueues()) EXPECT_FALSE(a_->driver(q).PopUsed().has_value());
    Result<TransportState> s = a_->transport().SaveState();
    EXPECT_TRUE(s) << s.error().message();
    return s ? *s : TransportState{};
  }
  // A fresh device and transport (the old one is gone), restored from `state`.
  void RestoreFresh(const TransportState& state) {
    a_.reset();
    b_ = std::make_unique<TransportHarness>(traits_.Make(&loop_), Drivers(), &loop_);
    Result<void> r = b_->transport().RestoreState(state);
    ASSERT_TRUE(r) << r.error().message();
  }

  T traits_;
  asio::io_context loop_;
  std::vector<std::unique_ptr<FakeDriver>> drivers_;
  std::unique_ptr<TransportHarness> a_, b_;
  std::vector<Req> pending_;
  int seq_ = 1;
};

using Devices =
    ::testing::Types<BlkTraits, NetTraits, NetMqTraits, RngTraits, VsockTraits, BalloonTraits>;
TYPED_TEST_SUITE(DeviceSnapshotTest, Devices);

TYPED_TEST(DeviceSnapshotTest, SaveRestoreSave_Identical) {
  TransportState saved = this->QuiesceWithPending();
  EXPECT_TRUE(saved.status & kStatusDriverOk);
  for (uint16_t q : this->traits_.WorkQueues()) {
    EXPECT_TRUE(saved.queues[q].ready);
    EXPECT_EQ(saved.queues[q].next_avail, 1);  // one served; the pending one not taken
    EXPECT_EQ(saved.queues[q].next_used, 1);
  }
  for (const QueueState& q : saved.queues) EXPECT_EQ(q.next_avail, q.next_used);
  this->RestoreFresh(saved);
  EXPECT_TRUE(this->b_->transport().quiesced());
  Result<TransportState> again = this->b_->transport().SaveState();
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_TRUE(*again == saved);
}

TYPED_TEST(DeviceSnapshotTest, Restored_ServesPendingThenNewRequests) {
  TransportState saved = this->QuiesceWithPending();
  this->RestoreFresh(saved);
  TransportHarness& b = *this->b_;
  EXPECT_EQ(b.irq().pulses(), 0u);
  b.transport().Resume();  // re-kicks the queues: the guest will not kick again
  for (size_t i = 0; i < this->pending_.size(); ++i) {
    uint16_t q = this->traits_.WorkQueues()[i];
    this->ExpectDone(b, q, this->pending_[i]);
    EXPECT_EQ(b.driver(q).used_idx(), 2);  // continues after the entry served before
  }
  EXPECT_GE(b.irq().pulses(), 1u);
  EXPECT_TRUE(b.Read32(mmio::kInterruptStatus) & mmio::kInterruptUsedBuffer);
  this->Serve(b);
  this->traits_.AfterResume(b);
  EXPECT_EQ(b.transport().stats().resets, 0u);
}

TYPED_TEST(DeviceSnapshotTest, QuiesceResume_KeepsActivation_ServesKicksFromQuiesce) {
  TransportState saved = this->QuiesceWithPending();
  TransportHarness& a = *this->a_;
  uint64_t resets = a.transport().stats().resets;  // Init's status = 0
  EXPECT_GE(a.transport().stats().deferred_kicks, 1u);
  a.transport().Resume();
  for (size_t i = 0; i < this->pending_.size(); ++i) {
    this->ExpectDone(a, this->traits_.WorkQueues()[i], this->pending_[i]);
  }
  EXPECT_TRUE(a.Read32(mmio::kStatus) & kStatusDriverOk);
  EXPECT_EQ(a.transport().stats().resets, resets);  // not reset
  this->Serve(a);
  this->traits_.AfterResume(a);
}

TYPED_TEST(DeviceSnapshotTest, SaveState_LiveNotQuiesced_Refused) {
  this->Serve(*this->a_);
  EXPECT_FALSE(this->a_->transport().SaveState());
}

}  // namespace
}  // namespace kite::virtio
