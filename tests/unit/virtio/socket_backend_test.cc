// Unit tests of the Unix-socket network backends (socket_backend.cc; QEMU's -netdev dgram and
// stream), driven from the other end of the socket by the test: framing both ways, many frames
// in one read and one frame over several, a hostile length, a stale socket file, a live one.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "net_test_frames.h"
#include "testing/temp_dir.h"
#include "virtio/net_backend.h"

namespace kite::virtio {
namespace {

using Frames = std::vector<std::vector<uint8_t>>;

using nettest::RunUntil;

sockaddr_un Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  return addr;
}

std::vector<uint8_t> Frame(size_t size, uint8_t seed) {
  std::vector<uint8_t> f(size);
  for (size_t i = 0; i < size; ++i) f[i] = static_cast<uint8_t>(seed + i);
  return f;
}

std::vector<uint8_t> Framed(const std::vector<uint8_t>& frame) {
  uint32_t n = static_cast<uint32_t>(frame.size());
  std::vector<uint8_t> out(4 + frame.size());
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(n >> (24 - 8 * i));
  std::copy(frame.begin(), frame.end(), out.begin() + 4);
  return out;
}

Result<bool> SendFrame(NetBackend& b, const std::vector<uint8_t>& frame) {
  iovec v{const_cast<uint8_t*>(frame.data()), frame.size()};
  return b.Send({&v, 1});
}

class StreamServer : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = OpenSocketBackend({.kind = SocketNetKind::kStreamServer, .path = path_, .remote = ""},
                               &loop_);
    ASSERT_TRUE(b) << b.error().message();
    backend_ = std::move(*b);
    backend_->StartReceive(
        [this](std::span<const uint8_t> f) {
          got_.emplace_back(f.begin(), f.end());
          return true;
        },
        [] {});
    peer_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr = Address(path_);
    ASSERT_EQ(::connect(peer_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_TRUE(RunUntil(
        &loop_, [&] { return backend_->description().find("(connected)") != std::string::npos; }));
  }

  testing::TempDir dir_;
  std::string path_ = dir_.File("s.sock");
  asio::io_context loop_;
  std::unique_ptr<NetBackend> backend_;
  UniqueFd peer_;
  Frames got_;
};

TEST_F(StreamServer, ManyFramesInOneWrite_OneFrameOverSeveral_DeliveredInOrder) {
  std::vector<uint8_t> bytes;
  Frames sent;
  for (int i = 0; i < 300; ++i) {
    sent.push_back(Frame(60 + i % 7, static_cast<uint8_t>(i)));
    std::vector<uint8_t> f = Framed(sent.back());
    bytes.insert(bytes.end(), f.begin(), f.end());
  }
  ASSERT_EQ(::send(peer_.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ASSERT_TRUE(RunUntil(&loop_, [&] { return got_.size() == sent.size(); })) << got_.size();
  EXPECT_EQ(got_, sent);
  // One 9000-byte frame in three pieces, the length itself split.
  std::vector<uint8_t> big = Framed(Frame(9000, 7));
  for (auto [from, to] : {std::pair<size_t, size_t>{0, 2}, {2, 4000}, {4000, big.size()}}) {
    ASSERT_EQ(::send(peer_.get(), big.data() + from, to - from, 0),
              static_cast<ssize_t>(to - from));
    RunUntil(
        &loop_, [] { return false; }, 0.02);
  }
  ASSERT_TRUE(RunUntil(&loop_, [&] { return got_.size() == sent.size() + 1; }));
  EXPECT_EQ(got_.back(), Frame(9000, 7));
}

TEST_F(StreamServer, SentFramesCarryTheirLength) {
  ASSERT_TRUE(*SendFrame(*backend_, Frame(60, 1)));
  ASSERT_TRUE(*SendFrame(*backend_, Frame(1514, 2)));
  RunUntil(
      &loop_, [] { return false; }, 0.05);
  std::vector<uint8_t> expect = Framed(Frame(60, 1));
  std::vector<uint8_t> second = Framed(Frame(1514, 2));
  expect.insert(expect.end(), second.begin(), second.end());
  std::vector<uint8_t> read(expect.size());
  ASSERT_EQ(::recv(peer_.get(), read.data(), read.size(), MSG_WAITALL),
            static_cast<ssize_t>(read.size()));
  EXPECT_EQ(read, expect);
  EXPECT_EQ(backend_->counters().tx_frames, 2u);
}

TEST_F(StreamServer, BadLength_PeerCutOff_NextPeerServed) {
  const uint8_t zero[4] = {0, 0, 0, 0};
  ASSERT_EQ(::send(peer_.get(), zero, 4, 0), 4);
  ASSERT_TRUE(RunUntil(
      &loop_, [&] { return backend_->description().find("(connected)") == std::string::npos; }));
  char c;
  EXPECT_EQ(::recv(peer_.get(), &c, 1, 0), 0) << "kite closed the connection";
  EXPECT_TRUE(got_.empty());
  // No peer: the guest's frames are dropped and counted.
  ASSERT_TRUE(*SendFrame(*backend_, Frame(60, 3)));
  EXPECT_EQ(backend_->counters().tx_errors, 1u);
  UniqueFd next(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr = Address(path_);
  ASSERT_EQ(::connect(next.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  std::vector<uint8_t> f = Framed(Frame(64, 9));
  ASSERT_EQ(::send(next.get(), f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
  ASSERT_TRUE(RunUntil(&loop_, [&] { return got_.size() == 1; }));
  EXPECT_EQ(got_[0], Frame(64, 9));
}

TEST(SocketBackend, Dgram_BothWays_StaleSocketReplaced_LiveOneRefused_RemovedAtEnd) {
  testing::TempDir dir;
  std::string local = dir.File("a.sock"), remote = dir.File("b.sock");
  {  // A stale socket file at LOCAL (bound, then its owner gone).
    UniqueFd old(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr = Address(local);
    ASSERT_EQ(::bind(old.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  UniqueFd peer(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un peer_addr = Address(remote);
  ASSERT_EQ(::bind(peer.get(), reinterpret_cast<sockaddr*>(&peer_addr), sizeof(peer_addr)), 0);
  asio::io_context loop;
  {
    auto b =
        OpenSocketBackend({.kind = SocketNetKind::kDgram, .path = local, .remote = remote}, &loop);
    ASSERT_TRUE(b) << b.error().message();
    Frames got;
    (*b)->StartReceive(
        [&](std::span<const uint8_t> f) {
          got.emplace_back(f.begin(), f.end());
          return true;
        },
        [] {});
    ASSERT_TRUE(*SendFrame(**b, Frame(100, 5)));
    std::vector<uint8_t> in(200);
    ASSERT_EQ(::recv(peer.get(), in.data(), in.size(), 0), 100);
    in.resize(100);
    EXPECT_EQ(in, Frame(100, 5));
    std::vector<uint8_t> out = Frame(80, 6);
    sockaddr_un to = Address(local);
    ASSERT_EQ(::sendto(peer.get(), out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&to),
                       sizeof(to)),
              80);
    ASSERT_TRUE(RunUntil(&loop, [&] { return got.size() == 1; }));
    EXPECT_EQ(got[0], out);
    // LOCAL is alive now: a second backend on it is refused.
    auto twice =
        OpenSocketBackend({.kind = SocketNetKind::kDgram, .path = local, .remote = remote}, &loop);
    ASSERT_FALSE(twice);
    EXPECT_NE(twice.error().message().find("is in use"), std::string::npos)
        << twice.error().message();
  }
  EXPECT_NE(::access(local.c_str(), F_OK), 0) << "the socket kite bound is removed at the end";
}

TEST(SocketBackend, NotASocket_AndNoListener_Refused) {
  testing::TempDir dir;
  asio::io_context loop;
  std::string file = dir.File("plain");
  std::fclose(std::fopen(file.c_str(), "w"));
  auto plain =
      OpenSocketBackend({.kind = SocketNetKind::kStreamServer, .path = file, .remote = ""}, &loop);
  ASSERT_FALSE(plain);
  EXPECT_NE(plain.error().message().find("exists and is not a socket"), std::string::npos);
  auto client = OpenSocketBackend(
      {.kind = SocketNetKind::kStreamClient, .path = dir.File("none.sock"), .remote = ""}, &loop);
  ASSERT_FALSE(client);
  EXPECT_NE(client.error().message().find("connecting to"), std::string::npos);
}

}  // namespace
}  // namespace kite::virtio
