// Unit tests of virtio-net's direct receive path (src/virtio/net_rx.cc: readv from the backend
// straight into guest buffers) over the tap backend's fd code (tap_backend.cc) with the tap
// replaced by a SOCK_SEQPACKET socketpair (OpenTapBackendOnFd): the test writes frames with
// a 12-byte vnet header into the other end, as the kernel's tap would. No root, no KVM.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "net_test_frames.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_device.h"
#include "virtio/net_header.h"
#include "virtio/queue.h"

namespace kite::virtio {
namespace {

using nettest::Hdr;
using nettest::TestFrame;
using testing::FakeDriver;

constexpr uint16_t kSize = 128;
constexpr uint8_t kSentinel = 0xa5;

class NetRxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer_.Reset(fds[1]);
    int sndbuf = 4 << 20;
    setsockopt(peer_.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    auto backend = OpenTapBackendOnFd(fds[0], "sp", kNetOffloadFeatures, &loop_);
    ASSERT_TRUE(backend.has_value()) << backend.error().message();
    auto dev = CreateVirtioNet(std::move(*backend),
                               NetOptions{.mac = nettest::kGuestMac, .queue_size = kSize}, &loop_);
    ASSERT_TRUE(dev.has_value()) << dev.error().message();
    device_ = *dev;
    net_ = dynamic_cast<VirtioNet*>(device_.get());
    ASSERT_NE(net_, nullptr);
  }

  // Activates the device with the offered features minus `without`.
  void Start(uint64_t without = 0) {
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
    Run();
  }
  void StartWithoutMrg() { Start(FeatureBit(net::kFeatureMrgRxbuf)); }

  // `count` RX chains of one `len`-byte buffer each (sentinel-filled, followed by `guard`
  // sentinel bytes no descriptor covers); returns their guest addresses.
  std::vector<uint64_t> AddBuffers(int count, uint32_t len, uint32_t guard = 0) {
    std::vector<uint64_t> addrs;
    for (int i = 0; i < count; ++i) {
      uint64_t addr = rx_driver_.Alloc(len + guard);
      std::vector<uint8_t> fill(len + guard, kSentinel);
      rx_driver_.WriteBytes(addr, fill.data(), fill.size());
      rx_driver_.AddChain({{addr, len, true}});
      addrs.push_back(addr);
    }
    rx_driver_.Publish();
    return addrs;
  }
  void Kick() {
    device_->ProcessQueue(0);
    Run();
  }
  // Writes header + frame into the socketpair, as a tap read would return it.
  void Inject(const std::vector<uint8_t>& frame, net::Header hdr = {}) {
    std::vector<uint8_t> bytes(sizeof(hdr) + frame.size());
    std::memcpy(bytes.data(), &hdr, sizeof(hdr));
    if (!frame.empty()) std::memcpy(bytes.data() + sizeof(hdr), frame.data(), frame.size());
    InjectRaw(bytes);
  }
  void InjectRaw(const std::vector<uint8_t>& bytes) {
    ASSERT_EQ(send(peer_.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    Run();
  }
  void Run() {
    for (int i = 0; i < 100; ++i) {
      loop_.restart();
      if (loop_.poll() == 0) break;
    }
  }
  std::vector<uint8_t> Bytes(uint64_t addr, uint32_t len) {
    std::vector<uint8_t> out(len);
    rx_driver_.ReadBytes(addr, out.data(), len);
    return out;
  }
  std::vector<uint32_t> UsedLengths() {
    std::vector<uint32_t> lens;
    while (auto used = rx_driver_.PopUsed()) lens.push_back(used->len);
    return lens;
  }
  // The payload gathered back from buffers `addrs` with used lengths `lens` (header skipped).
  std::vector<uint8_t> Gather(const std::vector<uint64_t>& addrs,
                              const std::vector<uint32_t>& lens) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i < lens.size(); ++i) {
      uint32_t skip = i == 0 ? kNetHeaderSize : 0;
      std::vector<uint8_t> part = Bytes(addrs[i] + skip, lens[i] - skip);
      out.insert(out.end(), part.begin(), part.end());
    }
    return out;
  }

  asio::io_context loop_;
  UniqueFd peer_;
  FakeDriver rx_driver_{{.queue_size = kSize}};
  FakeDriver tx_driver_{{.queue_size = kSize}};
  Queue rx_queue_{kSize};
  Queue tx_queue_{kSize};
  Queue ctrl_queue_{64};  // the control queue, not enabled
  std::vector<Queue*> queues_{&rx_queue_, &tx_queue_, &ctrl_queue_};
  std::shared_ptr<VirtioDevice> device_;
  VirtioNet* net_ = nullptr;
  int signals_[3] = {0, 0, 0};
  std::vector<std::string> broken_;
};

TEST_F(NetRxTest, Direct_Mergeable_FrameSpansThreeBuffers_NumBuffersThree) {
  Start();
  std::vector<uint64_t> bufs = AddBuffers(80, 1024);  // 80 KiB: room for the largest frame
  Kick();
  std::vector<uint8_t> frame = TestFrame(3000, 5);
  Inject(frame);
  std::vector<uint32_t> lens = UsedLengths();
  EXPECT_EQ(lens, (std::vector<uint32_t>{1024, 1024, 3012 - 2048}));
  EXPECT_EQ(rx_driver_.ReadObj<net::Header>(bufs[0]).num_buffers, 3);
  EXPECT_EQ(Gather(bufs, lens), frame);
  EXPECT_EQ(Bytes(bufs[2] + 964, 60), std::vector<uint8_t>(60, kSentinel));
  EXPECT_EQ(Bytes(bufs[3], 1024), std::vector<uint8_t>(1024, kSentinel));  // held, untouched
  EXPECT_EQ(device_->counters().bytes_read, frame.size());
}

TEST_F(NetRxTest, Direct_Mergeable_64KGsoFrame_SpreadWithGsoHeader) {
  Start();
  std::vector<uint64_t> bufs = AddBuffers(100, 1536);
  Kick();
  std::vector<uint8_t> frame = TestFrame(65000, 3, nettest::kEthertypeIpv4);
  Inject(frame, Hdr(net::kHdrFlagNeedsCsum, net::kGsoTcpv4, 1448, 34, 16));
  std::vector<uint32_t> lens = UsedLengths();
  ASSERT_EQ(lens.size(), (65012u + 1535) / 1536);
  net::Header hdr = rx_driver_.ReadObj<net::Header>(bufs[0]);
  EXPECT_EQ(hdr.num_buffers, lens.size());
  EXPECT_EQ(hdr.gso_type, net::kGsoTcpv4);
  EXPECT_EQ(hdr.gso_size, 1448);
  EXPECT_EQ(hdr.csum_start, 34);
  EXPECT_EQ(Gather(bufs, lens), frame);
}

TEST_F(NetRxTest, Direct_LargeFramesAfterTheFirst_ReadStraightIntoGuestMemory) {
  Start();
  std::vector<uint64_t> bufs = AddBuffers(120, 1536);
  Kick();
  std::vector<uint8_t> frame = TestFrame(30000, 8);
  Inject(frame);  // larger than expected: what the held chains cannot take spills and is copied
  EXPECT_EQ(net_->rx_copied(), 1u);
  std::vector<uint32_t> first = UsedLengths();
  EXPECT_EQ(Gather(bufs, first), frame);
  Inject(frame);  // now expected: the held chains take it all, no copy
  EXPECT_EQ(net_->rx_copied(), 1u);
  std::vector<uint64_t> next(bufs.begin() + first.size(), bufs.end());
  EXPECT_EQ(Gather(next, UsedLengths()), frame);
}

TEST_F(NetRxTest, Direct_SmallFrame_NoCopy) {
  Start();
  AddBuffers(2, 1024);
  Kick();
  Inject(TestFrame(200));
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{212});
  EXPECT_EQ(net_->rx_copied(), 0u);
}

TEST_F(NetRxTest, Direct_ShortRead_SmallFramesUseOneBufferEachInOrder) {
  Start();
  std::vector<uint64_t> bufs = AddBuffers(70, 1024);
  Kick();
  std::vector<uint8_t> a = TestFrame(60, 1), b = TestFrame(100, 2);
  Inject(a);
  Inject(b);
  EXPECT_EQ(UsedLengths(), (std::vector<uint32_t>{72, 112}));
  EXPECT_EQ(Bytes(bufs[0] + 12, 60), a);
  EXPECT_EQ(Bytes(bufs[0] + 72, 1), std::vector<uint8_t>{kSentinel});
  EXPECT_EQ(Bytes(bufs[1] + 12, 100), b);
  EXPECT_EQ(rx_driver_.ReadObj<net::Header>(bufs[1]).num_buffers, 1);
  EXPECT_EQ(device_->counters().requests, 2u);
}

TEST_F(NetRxTest, Direct_ReadShorterThanHeader_DroppedNothingReturned) {
  Start();
  AddBuffers(70, 1024);
  Kick();
  InjectRaw(std::vector<uint8_t>(8, 0));
  EXPECT_TRUE(UsedLengths().empty());
  EXPECT_EQ(device_->counters().drops, 1u);
  Inject(TestFrame(60));  // the held buffers take the next frame
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{72});
}

TEST_F(NetRxTest, Direct_Mergeable_HeaderSplitOverTwoDescriptors) {
  Start();
  uint64_t head = rx_driver_.Alloc(4), rest = rx_driver_.Alloc(2048);
  rx_driver_.AddChain({{head, 4, true}, {rest, 2048, true}});
  rx_driver_.Publish();
  AddBuffers(40, 2048);
  Kick();
  std::vector<uint8_t> frame = TestFrame(500, 7);
  Inject(frame, Hdr(net::kHdrFlagDataValid));
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{512});
  std::vector<uint8_t> hdr_bytes = Bytes(head, 4);
  std::vector<uint8_t> tail = Bytes(rest, 8);
  hdr_bytes.insert(hdr_bytes.end(), tail.begin(), tail.end());
  net::Header hdr;
  std::memcpy(&hdr, hdr_bytes.data(), sizeof(hdr));
  EXPECT_EQ(hdr.flags, net::kHdrFlagDataValid);  // GUEST_CSUM negotiated: kept
  EXPECT_EQ(hdr.num_buffers, 1);
  EXPECT_EQ(Bytes(rest + 8, 500), frame);
}

TEST_F(NetRxTest, Direct_NoMrg_HeaderThenFrame_NumBuffersOne) {
  StartWithoutMrg();
  std::vector<uint64_t> bufs = AddBuffers(1, 2048);
  Kick();
  std::vector<uint8_t> frame = TestFrame(1500, 9);
  Inject(frame);
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{1512});
  net::Header hdr = rx_driver_.ReadObj<net::Header>(bufs[0]);
  EXPECT_EQ(hdr.num_buffers, 1);
  EXPECT_EQ(hdr.gso_type, net::kGsoNone);
  EXPECT_EQ(Bytes(bufs[0] + 12, 1500), frame);
  EXPECT_EQ(net_->rx_copied(), 0u);
}

TEST_F(NetRxTest, G24_Direct_NoMrg_FrameLargerThanBuffer_DroppedNothingPastDescriptor) {
  StartWithoutMrg();
  std::vector<uint64_t> bufs = AddBuffers(1, 200, /*guard=*/64);
  Kick();
  Inject(TestFrame(500));
  EXPECT_TRUE(UsedLengths().empty());
  EXPECT_EQ(device_->counters().drops, 1u);
  EXPECT_EQ(Bytes(bufs[0] + 200, 64), std::vector<uint8_t>(64, kSentinel));
  std::vector<uint8_t> small = TestFrame(100, 4);  // the same buffer takes the next frame
  Inject(small);
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{112});
  EXPECT_EQ(Bytes(bufs[0] + 12, 100), small);
  EXPECT_EQ(Bytes(bufs[0] + 200, 64), std::vector<uint8_t>(64, kSentinel));
}

TEST_F(NetRxTest, G24_Mergeable_TooFewBuffers_FrameWaitsNothingReturnedThenDeliveredOnKick) {
  Start();
  std::vector<uint64_t> bufs = AddBuffers(1, 1024, /*guard=*/64);
  Kick();
  std::vector<uint8_t> frame = TestFrame(1500, 6);
  Inject(frame);  // its head goes into the one buffer, the rest waits in the device
  EXPECT_TRUE(UsedLengths().empty());
  EXPECT_EQ(Bytes(bufs[0] + 1024, 64), std::vector<uint8_t>(64, kSentinel));
  EXPECT_EQ(device_->counters().drops, 0u);
  std::vector<uint64_t> more = AddBuffers(1, 1024);
  Kick();
  std::vector<uint32_t> lens = UsedLengths();
  EXPECT_EQ(lens, (std::vector<uint32_t>{1024, 1512 - 1024}));
  EXPECT_EQ(Gather({bufs[0], more[0]}, lens), frame);
  EXPECT_EQ(rx_driver_.ReadObj<net::Header>(bufs[0]).num_buffers, 2);
  EXPECT_EQ(net_->rx_copied(), 1u);
}

TEST_F(NetRxTest, G24_Mergeable_WholeQueueTooSmall_FrameDroppedSmallFrameStillFits) {
  Start();
  std::vector<uint64_t> bufs = AddBuffers(kSize, 64, /*guard=*/16);  // 8 KiB in all
  Kick();
  Inject(TestFrame(10000));  // dropped, not waited for forever
  EXPECT_TRUE(UsedLengths().empty());
  EXPECT_EQ(device_->counters().drops, 1u);
  for (uint64_t addr : bufs) ASSERT_EQ(Bytes(addr + 64, 16), std::vector<uint8_t>(16, kSentinel));
  std::vector<uint8_t> small = TestFrame(100, 3);
  Inject(small);
  std::vector<uint32_t> lens = UsedLengths();
  EXPECT_EQ(lens, (std::vector<uint32_t>{64, 48}));
  EXPECT_EQ(Gather(bufs, lens), small);
}

TEST_F(NetRxTest, Direct_NoBuffers_FrameWaitsThenFollowingFramesInOrder) {
  StartWithoutMrg();
  Inject(TestFrame(60, 1));
  Inject(TestFrame(60, 2));
  EXPECT_TRUE(UsedLengths().empty());
  std::vector<uint64_t> bufs = AddBuffers(2, 256);
  Kick();
  EXPECT_EQ(UsedLengths(), (std::vector<uint32_t>{72, 72}));
  EXPECT_EQ(Bytes(bufs[0] + 12, 60), TestFrame(60, 1));
  EXPECT_EQ(Bytes(bufs[1] + 12, 60), TestFrame(60, 2));
  EXPECT_EQ(device_->counters().drops, 0u);
}

// Found by virtio_net_fuzzer: a frame of only the vnet header, read while no receive chain was
// held, completed with an empty list of chains (a read of a deque's front that was not there).
TEST_F(NetRxTest, Direct_NoBuffers_HeaderOnlyFrame_WaitsForABuffer) {
  Start();
  Inject({});
  EXPECT_TRUE(UsedLengths().empty());
  AddBuffers(1, 256);
  Kick();
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{12});
  Inject(TestFrame(60));  // reading goes on
  AddBuffers(1, 256);
  Kick();
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{72});
}

TEST_F(NetRxTest, Direct_NoMrg_NoBuffers_HeaderOnlyFrame_WaitsForABuffer) {
  StartWithoutMrg();
  Inject({});
  EXPECT_TRUE(UsedLengths().empty());
  AddBuffers(1, 256);
  Kick();
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{12});
}

TEST_F(NetRxTest, G25_Direct_GsoFrameGuestDidNotNegotiate_DroppedBuffersReused) {
  Start(FeatureBit(net::kFeatureGuestTso4) | FeatureBit(net::kFeatureGuestTso6));
  AddBuffers(70, 1024);
  Kick();
  Inject(TestFrame(3000), Hdr(net::kHdrFlagNeedsCsum, net::kGsoTcpv4, 1448, 34, 16));
  EXPECT_TRUE(UsedLengths().empty());
  EXPECT_EQ(device_->counters().drops, 1u);
  Inject(TestFrame(60));
  EXPECT_EQ(UsedLengths(), std::vector<uint32_t>{72});
}

TEST_F(NetRxTest, Direct_SeveralFramesInOneRun_OneInterrupt) {
  Start();
  AddBuffers(70, 1024);
  Kick();
  int before = signals_[0];
  std::vector<uint8_t> bytes(12 + 60, 0);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(send(peer_.get(), bytes.data(), bytes.size(), 0), 72);
  Run();
  EXPECT_EQ(UsedLengths().size(), 3u);
  EXPECT_EQ(signals_[0] - before, 1);
}

TEST_F(NetRxTest, Direct_BeforeActivation_FramesReadAndDropped) {
  Run();
  Inject(TestFrame(60));
  Inject(TestFrame(60));
  EXPECT_EQ(device_->counters().drops, 2u);
  uint8_t byte;
  EXPECT_LT(recv(peer_.get(), &byte, 1, MSG_DONTWAIT), 0);  // nothing came back either
}

TEST_F(NetRxTest, Direct_ResetWithFrameWaiting_FrameDroppedReadingGoesOn) {
  StartWithoutMrg();
  Inject(TestFrame(60));  // no buffers: waits in the host buffer
  device_->Reset();
  Run();
  EXPECT_EQ(device_->counters().drops, 1u);
  Inject(TestFrame(60));  // not live: read and dropped
  EXPECT_EQ(device_->counters().drops, 2u);
  EXPECT_TRUE(UsedLengths().empty());
}

TEST_F(NetRxTest, F7_Direct_PeerGone_ReadingStopsWithoutSpinning) {
  Start();
  AddBuffers(70, 1024);
  Kick();
  peer_.Reset();
  Run();  // end of file: the backend stops; Run() returns (no endless readiness)
  EXPECT_TRUE(UsedLengths().empty());
  EXPECT_TRUE(broken_.empty());
}

}  // namespace
}  // namespace kite::virtio
