// Unit tests of virtio-vsock (src/virtio/vsock*.cc): the protocol both ways, credit, the host
// side's CONNECT handshake and the bad inputs of BAD_INPUTS G26-G28 and F8, through the
// device's queues (fake driver) and real Unix sockets. No KVM.
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>

#include <asio/steady_timer.hpp>

#include "vsock_test_util.h"

namespace kite::virtio::vsocktest {
namespace {

using namespace vsock;  // Op names, limits

bool Readable(int fd, int ms = 1000) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

// Reads what is there (waiting up to a second for the first byte); "" at EOF.
std::string HostRead(int fd, size_t max = 65536) {
  if (!Readable(fd)) return "<nothing>";
  std::string buf(max, '\0');
  ssize_t n = ::recv(fd, buf.data(), max, MSG_DONTWAIT);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

class VsockTest : public VsockFixture {
 protected:
  // A guest-initiated connection from guest port 1000 to host port `port`, accepted.
  UniqueFd Connected(uint32_t port, UniqueFd* listener) {
    *listener = HostListen(port);
    Tx(Guest(kOpRequest, 1000, port));
    std::optional<Packet> p = Rx();
    EXPECT_TRUE(p && p->hdr.op == kOpResponse);
    return UniqueFd(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  }
  // The first packet on rx of op `op`, skipping credit updates.
  std::optional<Packet> RxOp(uint16_t op) {
    for (int i = 0; i < 64; ++i) {
      std::optional<Packet> p = Rx();
      if (!p || p->hdr.op == op) return p;
    }
    return std::nullopt;
  }
};

TEST(VsockDevice, Identity_Id19_ThreeQueues_ConfigIsCid) {
  testing::TempDir dir;
  asio::io_context loop;
  auto dev = CreateVirtioVsock({0x12345678, dir.File("s")}, &loop);
  ASSERT_TRUE(dev) << dev.error().message();
  EXPECT_EQ((*dev)->device_id(), 19u);
  EXPECT_EQ((*dev)->queue_max_sizes().size(), 3u);
  uint8_t config[12];
  std::memset(config, 0xff, sizeof(config));
  (*dev)->ReadConfig(0, config);
  uint64_t cid;
  std::memcpy(&cid, config, sizeof(cid));
  EXPECT_EQ(cid, 0x12345678u);
  EXPECT_EQ(config[8], 0);
}

TEST(VsockDevice, Cid_ReservedOrWide_Refused) {
  for (uint64_t cid : {0ull, 1ull, 2ull, 0xffffffffull, 1ull << 32}) {
    EXPECT_FALSE(CheckGuestCid(cid)) << cid;
  }
  EXPECT_TRUE(CheckGuestCid(3));
  EXPECT_TRUE(CheckGuestCid(0xfffffffe));
}

TEST(VsockDevice, Create_LivePath_Refused_StalePathReplaced) {
  testing::TempDir dir;
  asio::io_context loop;
  std::string path = dir.File("s");
  auto first = CreateVirtioVsock({3, path}, &loop);
  ASSERT_TRUE(first);
  EXPECT_FALSE(CreateVirtioVsock({4, path}, &loop));  // someone listens there
  first->reset();                                     // removes the file
  UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  stale.Reset();  // a socket file nobody listens on
  EXPECT_TRUE(CreateVirtioVsock({4, path}, &loop));
}

TEST_F(VsockTest, GuestConnect_NothingListening_Rst) {
  Tx(Guest(kOpRequest, 1000, 77));
  std::optional<Packet> p = Rx();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->hdr.op, kOpRst);
  EXPECT_EQ(p->hdr.src_cid, kHostCid);
  EXPECT_EQ(p->hdr.dst_cid, kCid);
  EXPECT_EQ(p->hdr.src_port, 77u);
  EXPECT_EQ(p->hdr.dst_port, 1000u);
}

TEST_F(VsockTest, GuestConnect_DataBothWays) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  ASSERT_TRUE(host);
  Tx(Guest(kOpRw, 1000, 5000, 5), "hello");
  EXPECT_EQ(HostRead(host.get()), "hello");
  ASSERT_EQ(::send(host.get(), "world!", 6, 0), 6);
  std::optional<Packet> p = RxOp(kOpRw);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data, "world!");
  EXPECT_EQ(p->hdr.src_port, 5000u);
  EXPECT_EQ(p->hdr.dst_port, 1000u);
  EXPECT_EQ(p->hdr.buf_alloc, kBufAlloc);
  EXPECT_EQ(p->hdr.fwd_cnt, 5u);  // the 5 bytes went to the host
}

TEST_F(VsockTest, HostConnect_RequestToGuest_OkAfterResponse_ThenData) {
  UniqueFd host = HostConnect();
  ASSERT_EQ(::send(host.get(), "CONNECT 52\nearly", 16, 0), 16);
  std::optional<Packet> req = Rx();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->hdr.op, kOpRequest);
  EXPECT_EQ(req->hdr.dst_port, 52u);
  EXPECT_GE(req->hdr.src_port, kFirstHostPort);
  uint32_t host_port = req->hdr.src_port;
  EXPECT_FALSE(Readable(host.get(), 50));  // no OK before the guest answers
  Tx(Guest(kOpResponse, 52, host_port));
  EXPECT_EQ(HostRead(host.get()), "OK " + std::to_string(host_port) + "\n");
  // The bytes after the CONNECT line are the first data for the guest.
  std::optional<Packet> data = RxOp(kOpRw);
  ASSERT_TRUE(data);
  EXPECT_EQ(data->data, "early");
}

TEST_F(VsockTest, HostConnect_GuestRst_SocketClosed) {
  UniqueFd host = HostConnect();
  ASSERT_EQ(::send(host.get(), "CONNECT 9\n", 10, 0), 10);
  std::optional<Packet> req = Rx();
  ASSERT_TRUE(req && req->hdr.op == kOpRequest);
  Tx(Guest(kOpRst, 9, req->hdr.src_port));
  EXPECT_EQ(HostRead(host.get()), "");  // EOF, no OK
}

TEST_F(VsockTest, HostConnect_BadLine_Closed_NoRequest) {
  for (const char* line : {"CONNECT x\n", "HELLO 5\n", "CONNECT 99999999999\n",
                           "CONNECT 1234567890123456789012345678901234"}) {
    UniqueFd host = HostConnect();
    ASSERT_GT(::send(host.get(), line, std::strlen(line), 0), 0);
    EXPECT_TRUE(RunUntil([&] { return Readable(host.get(), 0); })) << line;
    EXPECT_EQ(HostRead(host.get()), "") << line;
  }
  device_->ProcessQueue(kRxQueue);
  Pump();
  EXPECT_FALSE(rx_.PopUsed().has_value());
}

TEST_F(VsockTest, HostConnect_GuestNeverAnswers_TimesOut_RstToGuest) {
  UniqueFd host = HostConnect();
  ASSERT_EQ(::send(host.get(), "CONNECT 9\n", 10, 0), 10);
  std::optional<Packet> req = Rx();
  ASSERT_TRUE(req && req->hdr.op == kOpRequest);
  std::optional<Packet> rst;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3 && !rst; ++i) rst = Rx();
  ASSERT_TRUE(rst);
  EXPECT_EQ(rst->hdr.op, kOpRst);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  EXPECT_EQ(HostRead(host.get()), "");
}

// G26: every malformed packet is answered with a RST (or dropped when the header cannot be
// trusted), nothing is read beyond the chain, and the device keeps working.
TEST_F(VsockTest, BadPackets_RstOrDropped_DeviceLives) {
  Header too_long = Guest(kOpRw, 1000, 5, kMaxPayload + 1);
  Tx(too_long, std::string(16, 'x'));
  Header beyond = Guest(kOpRw, 1001, 5, 100);
  Tx(beyond, std::string(10, 'x'));  // 10 bytes where len says 100
  Header not_host = Guest(kOpRequest, 1002, 5);
  not_host.dst_cid = 7;
  Tx(not_host);
  Header bad_type = Guest(kOpRequest, 1003, 5);
  bad_type.type = 2;
  Tx(bad_type);
  Tx(Guest(99, 1004, 5));
  Tx(Guest(kOpInvalid, 1005, 5));
  for (uint32_t port = 1000; port <= 1005; ++port) {
    std::optional<Packet> p = Rx();
    ASSERT_TRUE(p) << port;
    EXPECT_EQ(p->hdr.op, kOpRst);
    EXPECT_EQ(p->hdr.dst_port, port);
  }
  Header spoofed = Guest(kOpRequest, 1006, 5);
  spoofed.src_cid = 4;
  Tx(spoofed);
  uint64_t h = tx_.Alloc(8);  // shorter than a header
  tx_.AddChain({{h, 8, false}});
  tx_.Publish();
  device_->ProcessQueue(kTxQueue);
  Pump();
  EXPECT_FALSE(rx_.PopUsed().has_value());  // no answer to either
  EXPECT_TRUE(broken_.empty());
  EXPECT_GE(device_->counters().drops, 8u);
  UniqueFd listener;
  EXPECT_TRUE(Connected(6000, &listener));  // still serving
}

TEST_F(VsockTest, BadPacket_OnOpenConnection_ResetsIt) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  Tx(Guest(kOpRw, 1000, 5000, 1000), "short");
  std::optional<Packet> rst = RxOp(kOpRst);
  ASSERT_TRUE(rst);
  EXPECT_EQ(rst->hdr.dst_port, 1000u);
  EXPECT_EQ(HostRead(host.get()), "");  // nothing of the bad packet reached the host
}

// G27: at most kMaxConnections; requests beyond get a RST and no socket.
TEST_F(VsockTest, ConnectStorm_CappedAt1023_RstBeyond) {
  UniqueFd listener = HostListen(7000);
  size_t responses = 0, rsts = 0;
  for (uint32_t i = 0; i < kMaxConnections + 50; ++i) {
    Tx(Guest(kOpRequest, 10000 + i, 7000));
    while (std::optional<Packet> p = Rx()) {
      responses += p->hdr.op == kOpResponse;
      rsts += p->hdr.op == kOpRst;
      if (responses + rsts == i + 1) break;
    }
  }
  EXPECT_EQ(responses, kMaxConnections);
  EXPECT_EQ(rsts, 50u);
}

// G28: a guest that sends beyond the credit it was given loses the connection; the device
// never buffers more than kBufAlloc for it.
TEST_F(VsockTest, GuestIgnoresCredit_ConnectionReset) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);  // the host never reads
  std::string chunk(kRxBuf, 'c');
  bool reset = false;
  for (int i = 0; i < 2000 && !reset; ++i) {
    Tx(Guest(kOpRw, 1000, 5000, kRxBuf), chunk);
    device_->ProcessQueue(kRxQueue);
    loop_.restart();
    loop_.poll();
    while (std::optional<UsedElement> used = rx_.PopUsed()) {
      uint64_t addr = rx_buffers_.at(static_cast<uint16_t>(used->id));
      reset |= rx_.ReadObj<Header>(addr).op == kOpRst;
      rx_buffers_.erase(static_cast<uint16_t>(used->id));
    }
  }
  EXPECT_TRUE(reset);
  // The host got what the kernel buffered, then EOF: never more than was sent.
  ::fcntl(host.get(), F_SETFL, O_NONBLOCK);
  char buf[65536];
  while (::recv(host.get(), buf, sizeof(buf), 0) > 0) {
  }
  EXPECT_EQ(::recv(host.get(), buf, sizeof(buf), 0), 0);
}

TEST_F(VsockTest, HostToGuest_NeverMoreThanGuestCredit) {
  guest_buf_alloc_ = 6000;
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  std::string data(20000, 'd');
  ASSERT_EQ(::send(host.get(), data.data(), data.size(), 0), 20000);
  size_t got = 0;
  while (std::optional<Packet> p = RxOp(kOpRw)) got += p->hdr.len;
  EXPECT_EQ(got, 6000u);
  guest_fwd_cnt_ = 6000;  // the guest read it all
  Tx(Guest(kOpCreditUpdate, 1000, 5000));
  while (std::optional<Packet> p = RxOp(kOpRw)) got += p->hdr.len;
  EXPECT_EQ(got, 12000u);
}

TEST_F(VsockTest, CreditRequest_AnsweredWithUpdate) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  Tx(Guest(kOpRw, 1000, 5000, 3), "abc");
  Tx(Guest(kOpCreditRequest, 1000, 5000));
  std::optional<Packet> p = RxOp(kOpCreditUpdate);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->hdr.buf_alloc, kBufAlloc);
  EXPECT_EQ(p->hdr.fwd_cnt, 3u);
}

TEST_F(VsockTest, DataForwarded_CreditUpdateSentUnasked) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  std::string chunk(kRxBuf, 'c');
  for (int i = 0; i < 5; ++i) Tx(Guest(kOpRw, 1000, 5000, kRxBuf), chunk);
  std::optional<Packet> p = RxOp(kOpCreditUpdate);
  ASSERT_TRUE(p);
  EXPECT_GE(p->hdr.fwd_cnt, kCreditUpdateAfter);
}

// F8: the host peer goes away while the guest sends: the guest gets a RST, kite lives on.
TEST_F(VsockTest, HostPeerCloses_GuestSends_Rst) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  host.Reset();
  Tx(Guest(kOpRw, 1000, 5000, 4), "data");
  std::optional<Packet> p = RxOp(kOpRst);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->hdr.dst_port, 1000u);
}

TEST_F(VsockTest, HostPeerCloses_GuestGetsShutdown) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  ASSERT_EQ(::send(host.get(), "bye", 3, 0), 3);
  host.Reset();
  std::optional<Packet> data = RxOp(kOpRw);
  ASSERT_TRUE(data);
  EXPECT_EQ(data->data, "bye");
  std::optional<Packet> shut = RxOp(kOpShutdown);
  ASSERT_TRUE(shut);
  EXPECT_EQ(shut->hdr.flags & kShutdownSend, kShutdownSend);
}

TEST_F(VsockTest, GuestShutdownBoth_FlushedThenRst_HostSeesEof) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  Tx(Guest(kOpRw, 1000, 5000, 4), "last");
  Header shut = Guest(kOpShutdown, 1000, 5000);
  shut.flags = kShutdownRcv | kShutdownSend;
  Tx(shut);
  std::optional<Packet> rst = RxOp(kOpRst);
  ASSERT_TRUE(rst);
  EXPECT_EQ(HostRead(host.get()), "last");
  EXPECT_EQ(HostRead(host.get()), "");
}

// Out of descriptors: accept fails with EMFILE while the listener stays readable. The device
// waits and tries again instead of spinning on the loop; the peer is served once it can be.
TEST_F(VsockTest, AcceptOutOfDescriptors_NoSpin_ServedLater) {
  // The loop runs a timer once with descriptors to spare: UBSan checks a virtual call's type the
  // first time it sees it with a pipe, which fails with no descriptor left (a false "invalid
  // vptr" in asio's reactor and timer queue).
  asio::steady_timer warm(loop_);
  warm.expires_after(std::chrono::milliseconds(1));
  warm.async_wait([&](const asio::error_code&) {
    warm.expires_after(std::chrono::milliseconds(1));
    warm.async_wait([](const asio::error_code&) {});
    warm.cancel();
  });
  Pump();
  UniqueFd host = HostConnect();
  ASSERT_EQ(::send(host.get(), "CONNECT 7\n", 10, 0), 10);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  int probe = ::dup(0);
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(probe);  // every descriptor from here on fails
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  auto start = std::chrono::steady_clock::now();
  Pump();  // a second of loop
  ::getrusage(RUSAGE_SELF, &after);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  auto cpu_us = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000 + r.ru_utime.tv_usec +
           r.ru_stime.tv_usec;
  };
  auto wall_us = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count();
  EXPECT_LT(cpu_us(after) - cpu_us(before), wall_us / 2);  // not a busy loop
  std::optional<Packet> req = Rx();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->hdr.op, kOpRequest);
  EXPECT_EQ(req->hdr.dst_port, 7u);
}

TEST_F(VsockTest, Reset_ClosesHostSockets) {
  UniqueFd listener;
  UniqueFd host = Connected(5000, &listener);
  device_->Reset();
  EXPECT_EQ(HostRead(host.get()), "");
}

TEST_F(VsockTest, Restore_SendsTransportResetEvent_BadStateRefused) {
  std::vector<uint8_t> state = device_->SaveDeviceState();
  auto fresh = CreateVirtioVsock({kCid, dir_.File("w.sock")}, &loop_);
  ASSERT_TRUE(fresh);
  std::vector<uint8_t> bad = state;
  bad[1] ^= 1;  // another CID
  EXPECT_FALSE((*fresh)->RestoreDeviceState(bad));
  EXPECT_FALSE((*fresh)->RestoreDeviceState(std::vector<uint8_t>{1}));
  ASSERT_TRUE((*fresh)->RestoreDeviceState(state));
  device_ = *fresh;
  ActiveQueues active;
  active.memory = &rx_.memory();
  active.queues = std::span<Queue* const>(queues_);
  active.signal_used = [](uint16_t) {};
  ASSERT_TRUE(device_->Activate(std::move(active)));
  uint64_t ev = ev_.Alloc(4);
  ev_.WriteObj<uint32_t>(ev, 0xffffffff);
  ev_.AddChain({{ev, 4, true}});
  ev_.Publish();
  device_->ProcessQueue(kEventQueue);
  std::optional<UsedElement> used = ev_.PopUsed();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 4u);
  EXPECT_EQ(ev_.ReadObj<uint32_t>(ev), kEventTransportReset);
}

}  // namespace
}  // namespace kite::virtio::vsocktest
