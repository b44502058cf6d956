// Unit tests of the virtio-net backends: the tap backend (tap_backend.cc; needs root and
// /dev/net/tun, skipped without) checked from the other side with a packet socket, both its
// FrameSink and its direct ReadFrame receive, and the
// libslirp user-mode NAT backend (user_backend.cc; no privileges): DHCP, ARP and a host port
// forward, with frames built by the test.
#include "virtio/net_backend.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "net_test_frames.h"
#include "virtio/net_header.h"

namespace kite::virtio {
namespace {

using namespace nettest;  // NOLINT: test frame helpers
using Frames = std::vector<std::vector<uint8_t>>;

bool HasPayload(const std::vector<uint8_t>& got, const std::vector<uint8_t>& frame, size_t offset) {
  return got.size() == offset + frame.size() &&
         std::equal(frame.begin(), frame.end(), got.begin() + offset);
}

// --- Tap ---

class TapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "kt" + std::to_string(getpid() % 1000000) + "n";
    auto backend = OpenTapBackend({.name = name_, .bridge = ""}, &loop_);
    if (!backend) {
      int e = backend.error().sys_errno();
      if (e == EPERM || e == EACCES || e == ENOENT || e == ENODEV) {
        GTEST_SKIP() << "no tap here (needs /dev/net/tun and CAP_NET_ADMIN): "
                     << backend.error().message();
      }
      FAIL() << backend.error().message();
    }
    backend_ = std::move(*backend);
    packet_.Reset(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    ASSERT_TRUE(packet_.valid()) << strerror(errno);
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = static_cast<int>(if_nametoindex(name_.c_str()));
    ASSERT_NE(addr.sll_ifindex, 0);
    ifindex_ = addr.sll_ifindex;
    ASSERT_EQ(bind(packet_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << strerror(errno);
  }

  // Reads frames from the packet socket for up to 2 s until one equals `frame`.
  bool SeenOnInterface(const std::vector<uint8_t>& frame) {
    std::vector<uint8_t> buf(70000);
    for (int i = 0; i < 200; ++i) {
      pollfd p{packet_.get(), POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      ssize_t n;
      while ((n = recv(packet_.get(), buf.data(), buf.size(), 0)) > 0) {
        if (static_cast<size_t>(n) == frame.size() &&
            std::equal(frame.begin(), frame.end(), buf.begin())) {
          return true;
        }
      }
    }
    return false;
  }

  asio::io_context loop_;
  std::string name_;
  std::unique_ptr<NetBackend> backend_;
  UniqueFd packet_;
  int ifindex_ = 0;
};

TEST_F(TapTest, Open_CreatesInterfaceWithVnetHeaderAndOffloads) {
  EXPECT_TRUE(backend_->has_vnet_header());
  EXPECT_EQ(backend_->offload_features(), kNetOffloadFeatures);
  EXPECT_EQ(backend_->description(), "tap " + name_);
  EXPECT_TRUE(backend_->SetOffloads(FeatureBit(net::kFeatureGuestCsum) |
                                    FeatureBit(net::kFeatureGuestTso4)));
}

TEST_F(TapTest, Send_FrameArrivesOnTheInterfaceWithoutHeader) {
  std::vector<uint8_t> frame = TestFrame(200, 42);
  net::Header hdr{};
  iovec iov[2] = {{&hdr, sizeof(hdr)}, {frame.data(), frame.size()}};
  auto sent = backend_->Send(iov);
  ASSERT_TRUE(sent.has_value()) << sent.error().message();
  EXPECT_TRUE(*sent);
  EXPECT_TRUE(SeenOnInterface(frame));
  EXPECT_EQ(backend_->counters().tx_frames, 1u);
}

TEST_F(TapTest, Receive_FrameSentOnInterfaceDeliveredWithVnetHeader) {
  Frames got;
  backend_->StartReceive(
      [&](std::span<const uint8_t> f) {
        got.emplace_back(f.begin(), f.end());
        return true;
      },
      [] {});
  std::vector<uint8_t> frame = TestFrame(300, 17);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  ASSERT_EQ(sendto(packet_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to),
                   sizeof(to)),
            static_cast<ssize_t>(frame.size()))
      << strerror(errno);
  auto found = [&] {
    for (const auto& f : got) {
      if (HasPayload(f, frame, kNetHeaderSize)) return true;
    }
    return false;
  };
  EXPECT_TRUE(RunUntil(&loop_, found, 3));
}

TEST_F(TapTest, Receive_RefusedFrameRedeliveredAfterResume) {
  int offered = 0;
  bool accept = false;
  backend_->StartReceive(
      [&](std::span<const uint8_t> f) {
        if (f.size() != kNetHeaderSize + 120) return true;  // the kernel's own frames
        ++offered;
        return accept;
      },
      [] {});
  std::vector<uint8_t> frame = TestFrame(120, 1);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  ASSERT_GT(sendto(packet_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to),
                   sizeof(to)),
            0);
  ASSERT_TRUE(RunUntil(
      &loop_, [&] { return offered == 1; }, 3));
  RunUntil(
      &loop_, [] { return false; }, 0.05);
  EXPECT_EQ(offered, 1);  // paused: not offered again
  accept = true;
  backend_->ResumeReceive();
  EXPECT_TRUE(RunUntil(
      &loop_, [&] { return offered == 2; }, 3));
}

// Sends `frame` on the tap interface from the host side, then reads frames with ReadFrame into
// `iov` until a read of `expect` bytes shows up (the kernel sends a few small frames of its own
// on a new interface); returns `expect`, or 0 when no such read came.
size_t ReadDirect(NetBackend* backend, asio::io_context* loop, int packet, int ifindex,
                  const std::vector<uint8_t>& frame, std::span<const iovec> iov, size_t expect) {
  int readable = 0;
  backend->StartDirectReceive([&] { ++readable; }, [] {});
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  if (sendto(packet, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) !=
      static_cast<ssize_t>(frame.size())) {
    return 0;
  }
  for (int turn = 0; turn < 100; ++turn) {
    for (;;) {
      auto read = backend->ReadFrame(iov);
      if (!read || !read->has_value()) break;
      if (**read == expect) return **read;
    }
    int before = readable;
    RunUntil(
        loop, [&] { return readable != before; }, 0.05);
  }
  return 0;
}

TEST_F(TapTest, ReadFrame_IntoSplitBuffers_HeaderThenFrame) {
  std::vector<uint8_t> frame = TestFrame(1000, 23);
  net::Header hdr;
  std::vector<uint8_t> a(300), b(2000);
  iovec iov[3] = {{&hdr, sizeof(hdr)}, {a.data(), a.size()}, {b.data(), b.size()}};
  size_t n = ReadDirect(backend_.get(), &loop_, packet_.get(), ifindex_, frame, iov,
                        kNetHeaderSize + frame.size());
  ASSERT_EQ(n, kNetHeaderSize + frame.size());
  EXPECT_EQ(hdr.gso_type, net::kGsoNone);
  std::vector<uint8_t> got(a);
  got.insert(got.end(), b.begin(), b.begin() + 700);
  EXPECT_EQ(got, frame);
}

// What the device relies on: a tap read into too little room cuts the frame to the room and
// says nothing else, so a read that fills every byte may have been cut (the device always
// offers more room than the largest frame and drops such a read).
TEST_F(TapTest, ReadFrame_FrameLargerThanBuffers_CutToTheRoom) {
  std::vector<uint8_t> frame = TestFrame(1400, 5);
  net::Header hdr;
  std::vector<uint8_t> small(500);
  iovec iov[2] = {{&hdr, sizeof(hdr)}, {small.data(), small.size()}};
  size_t n = ReadDirect(backend_.get(), &loop_, packet_.get(), ifindex_, frame, iov,
                        sizeof(hdr) + small.size());
  EXPECT_EQ(n, sizeof(hdr) + small.size());
  EXPECT_TRUE(std::equal(small.begin(), small.end(), frame.begin()));
}

// A single-queue tap cannot be opened as a multiqueue one (the kernel's EINVAL), with a hint.
TEST_F(TapTest, OpenQueues_SingleQueueTap_RefusedWithHint) {
  auto queues = OpenTapQueues({.name = name_, .bridge = "", .queues = 2}, &loop_);
  ASSERT_FALSE(queues.has_value());
  EXPECT_NE(queues.error().message().find("multi_queue"), std::string::npos)
      << queues.error().message();
}

// queues=3: three fds on one interface. A detached queue (the guest's pair not in use) reads
// nothing, is not an error, and gets no frame; the attached queues get every frame.
TEST(TapMultiqueueTest, ThreeQueues_DetachedQueueGetsNothing_AttachAgain) {
  asio::io_context loop;
  std::string name = "kt" + std::to_string(getpid() % 1000000) + "m";
  auto opened = OpenTapQueues({.name = name, .bridge = "", .queues = 3}, &loop);
  if (!opened) {
    int e = opened.error().sys_errno();
    if (e == EPERM || e == EACCES || e == ENOENT || e == ENODEV) {
      GTEST_SKIP() << "no tap here: " << opened.error().message();
    }
    FAIL() << opened.error().message();
  }
  std::vector<std::unique_ptr<NetBackend>>& queues = *opened;
  ASSERT_EQ(queues.size(), 3u);
  EXPECT_FALSE(OpenTapQueues({.name = "", .bridge = "", .queues = 17}, &loop).has_value());
  for (auto& q : queues) q->StartDirectReceive([] {}, [] {});
  ASSERT_TRUE(queues[2]->SetQueueEnabled(false));
  UniqueFd packet(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  ASSERT_TRUE(packet.valid());
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  to.sll_halen = 6;
  for (uint8_t i = 0; i < 8; ++i) {
    std::vector<uint8_t> frame = TestFrame(100, i);
    ASSERT_EQ(sendto(packet.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to),
                     sizeof(to)),
              100);
  }
  std::vector<uint8_t> buf(70000);
  iovec iov{buf.data(), buf.size()};
  int got[3] = {0, 0, 0};
  for (int turn = 0; turn < 100 && got[0] + got[1] < 8; ++turn) {
    for (int k = 0; k < 3; ++k) {
      for (;;) {
        auto read = queues[k]->ReadFrame({&iov, 1});
        ASSERT_TRUE(read.has_value()) << "queue " << k << ": " << read.error().message();
        if (!read->has_value()) break;
        // Ours: 100 bytes after the header, ethertype 0x88b5 (the kernel sends others).
        if (**read == kNetHeaderSize + 100 && buf[kNetHeaderSize + 12] == 0x88) ++got[k];
      }
    }
    RunUntil(
        &loop, [] { return false; }, 0.02);
  }
  EXPECT_EQ(got[0] + got[1], 8);
  EXPECT_EQ(got[2], 0);
  ASSERT_TRUE(queues[2]->SetQueueEnabled(true));
  auto read = queues[2]->ReadFrame({&iov, 1});
  EXPECT_TRUE(read.has_value());  // attached again: reads work (nothing waiting)
}

// --- User-mode NAT (libslirp) ---

class UserNetTest : public ::testing::Test {
 protected:
  void Open(UserNetOptions options = {}) {
    auto backend = OpenUserBackend(options, &loop_);
    ASSERT_TRUE(backend.has_value()) << backend.error().message();
    backend_ = std::move(*backend);
    backend_->StartReceive(
        [this](std::span<const uint8_t> f) {
          frames_.emplace_back(f.begin(), f.end());
          return true;
        },
        [] {});
  }
  void Send(const std::vector<uint8_t>& frame) {
    iovec iov{const_cast<uint8_t*>(frame.data()), frame.size()};
    auto sent = backend_->Send({&iov, 1});
    ASSERT_TRUE(sent.has_value());
    EXPECT_TRUE(*sent);
  }

  asio::io_context loop_;
  std::unique_ptr<NetBackend> backend_;
  Frames frames_;
};

TEST_F(UserNetTest, Identity_NoVnetHeaderNoOffloads) {
  Open();
  EXPECT_FALSE(backend_->has_vnet_header());
  EXPECT_EQ(backend_->offload_features(), 0u);
}

TEST_F(UserNetTest, DhcpDiscover_OfferFor10_0_2_15) {
  Open();
  Send(DhcpDiscover(kGuestMac, 0x12345678));
  std::optional<DhcpInfo> offer;
  ASSERT_TRUE(RunUntil(&loop_, [&] {
    for (const auto& f : frames_) {
      if ((offer = ParseDhcp(f))) return true;
    }
    return false;
  }));
  EXPECT_EQ(offer->xid, 0x12345678u);
  EXPECT_EQ(offer->message_type, 2);  // DHCPOFFER
  EXPECT_EQ(offer->your_ip, Ipv4(10, 0, 2, 15));
}

TEST_F(UserNetTest, ArpForGateway_Answered) {
  Open();
  Send(ArpRequest(kGuestMac, Ipv4(10, 0, 2, 15), Ipv4(10, 0, 2, 2)));
  std::optional<ArpInfo> reply;
  ASSERT_TRUE(RunUntil(&loop_, [&] {
    for (const auto& f : frames_) {
      if ((reply = ParseArp(f)) && reply->op == 2) return true;
    }
    return false;
  }));
  EXPECT_EQ(reply->sender_ip, Ipv4(10, 0, 2, 2));
  EXPECT_EQ(reply->target_ip, Ipv4(10, 0, 2, 15));
}

TEST_F(UserNetTest, HostForward_ConnectOnHost_SynReachesGuestPort) {
  // A free host port (closed again; slirp binds it a moment later).
  UniqueFd probe(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  uint16_t port = ntohs(addr.sin_port);
  probe.Reset();

  auto fwd = ParseHostForward("tcp:127.0.0.1:" + std::to_string(port) + "-:22");
  ASSERT_TRUE(fwd.has_value());
  Open({.forwards = {*fwd}});
  Send(ArpRequest(kGuestMac, Ipv4(10, 0, 2, 15), Ipv4(10, 0, 2, 2)));  // slirp learns our MAC

  UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int r = connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << strerror(errno);
  size_t seen = 0;
  std::optional<TcpInfo> syn;
  bool found = RunUntil(&loop_, [&] {
    for (; seen < frames_.size(); ++seen) {
      auto arp = ParseArp(frames_[seen]);
      if (arp && arp->op == 1 && arp->target_ip == Ipv4(10, 0, 2, 15)) {
        Send(ArpReply(kGuestMac, Ipv4(10, 0, 2, 15), arp->sender_mac, arp->sender_ip));
      }
      syn = ParseTcp(frames_[seen]);
      if (syn && (syn->flags & 0x02)) return true;
    }
    return false;
  });
  ASSERT_TRUE(found);
  EXPECT_EQ(syn->dst_ip, Ipv4(10, 0, 2, 15));
  EXPECT_EQ(syn->dst_port, 22);
}

TEST_F(UserNetTest, HostForward_PortInUse_OpenFails) {
  UniqueFd busy(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(busy.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(busy.get(), 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(busy.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  HostForward fwd;
  fwd.host_addr = "127.0.0.1";
  fwd.host_port = ntohs(addr.sin_port);
  fwd.guest_port = 22;
  EXPECT_FALSE(OpenUserBackend({.forwards = {fwd}}, &loop_).has_value());
}

}  // namespace
}  // namespace kite::virtio
