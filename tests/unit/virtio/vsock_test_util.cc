// See vsock_test_util.h.
#include "vsock_test_util.h"

namespace kite::virtio::vsocktest {

void VsockFixture::SetUp() {
  auto dev = CreateVirtioVsock({kCid, path_}, &loop_);
  ASSERT_TRUE(dev) << dev.error().message();
  device_ = *dev;
  rx_.Configure(&rxq_);
  tx_.Configure(&txq_);
  ev_.Configure(&evq_);
  for (Queue* q : queues_) ASSERT_TRUE(q->Activate(&rx_.memory(), false, true));
  ActiveQueues active;
  active.memory = &rx_.memory();
  active.features = device_->device_features();
  active.queues = std::span<Queue* const>(queues_);
  active.signal_used = [](uint16_t) {};
  active.mark_broken = [this](const std::string& why) { broken_.push_back(why); };
  ASSERT_TRUE(device_->Activate(std::move(active)));
  for (int i = 0; i < 32; ++i) GiveRx(rx_.Alloc(sizeof(Header) + kRxBuf));
  rx_.Publish();
}

void VsockFixture::GiveRx(uint64_t addr) {
  uint16_t head =
      rx_.AddChain({{addr, sizeof(Header), true}, {addr + sizeof(Header), kRxBuf, true}});
  rx_buffers_[head] = addr;
}

Header VsockFixture::Guest(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len) const {
  Header h{};
  h.src_cid = kCid;
  h.dst_cid = vsock::kHostCid;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.len = len;
  h.type = vsock::kTypeStream;
  h.op = op;
  h.buf_alloc = guest_buf_alloc_;
  h.fwd_cnt = guest_fwd_cnt_;
  return h;
}

void VsockFixture::Tx(const Header& hdr, const std::string& payload) {
  uint64_t h = tx_.Alloc(sizeof(hdr));
  tx_.WriteObj(h, hdr);
  std::vector<kite::testing::FakeBuffer> chain = {{h, sizeof(hdr), false}};
  if (!payload.empty()) {
    uint64_t p = tx_.Alloc(static_cast<uint32_t>(payload.size()));
    tx_.WriteBytes(p, payload.data(), payload.size());
    chain.push_back({p, static_cast<uint32_t>(payload.size()), false});
  }
  tx_.AddChain(chain);
  tx_.Publish();
  device_->ProcessQueue(vsock::kTxQueue);
  RunUntil([&] {
    while (auto used = tx_.PopUsed()) {
      EXPECT_EQ(used->len, 0u);
      ++tx_used_;
    }
    return txq_.in_flight() == 0;
  });
}

bool VsockFixture::RunUntil(const std::function<bool()>& pred) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < end) {
    loop_.restart();
    loop_.run_for(std::chrono::milliseconds(2));
    if (pred()) return true;
  }
  return false;
}

std::optional<Packet> VsockFixture::Rx() {
  std::optional<UsedElement> used;
  device_->ProcessQueue(vsock::kRxQueue);
  RunUntil([&] { return (used = rx_.PopUsed()).has_value(); });
  if (!used) return std::nullopt;
  uint64_t addr = rx_buffers_.at(static_cast<uint16_t>(used->id));
  rx_buffers_.erase(static_cast<uint16_t>(used->id));
  Packet p;
  EXPECT_GE(used->len, sizeof(Header));
  p.hdr = rx_.ReadObj<Header>(addr);
  EXPECT_EQ(used->len, sizeof(Header) + p.hdr.len);
  p.data.resize(std::min(p.hdr.len, kRxBuf));
  rx_.ReadBytes(addr + sizeof(Header), p.data.data(), p.data.size());
  GiveRx(addr);
  rx_.Publish();
  return p;
}

UniqueFd VsockFixture::HostListen(uint32_t port) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string p = path_ + "_" + std::to_string(port);
  std::strncpy(addr.sun_path, p.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(fd.get(), 4096), 0);
  return fd;
}

UniqueFd VsockFixture::HostConnect() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

}  // namespace kite::virtio::vsocktest
