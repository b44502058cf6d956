// libFuzzer target for the virtio-vsock device's packet handling (src/virtio/vsock.cc): a
// device with its host side in a private directory where nothing listens on any port, driven
// by the fake driver through its queues — tx packets of fuzzed bytes (1-3 descriptors), rx
// buffers of fuzzed sizes (some too small for a header), kicks and event-loop turns in any
// order. With no host listener every connection the guest asks for fails, so what the device
// must answer is known exactly: one RST per packet that is neither dropped (short header,
// foreign src_cid) nor itself an RST, from where the packet went back to its source, in order.
// Checks beyond the sanitizers:
//   - the rx packets are exactly those RSTs, in order (a buffer smaller than a header takes
//     one and comes back with length 0): a dropped packet is never answered and changes
//     nothing, and the device never speaks unasked;
//   - every tx chain comes back, with used length 0 (5.10.6.2);
//   - the queues never break (the driver's chains are well-formed).
#include <fuzzer/FuzzedDataProvider.h>

#include <asio/io_context.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/log.h"
#include "fuzz_private_dir.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/vsock.h"
#include "virtio/vsock_packet.h"

namespace {

using namespace kite::virtio;
using vsock::Header;

constexpr uint16_t kRxQueue = 0;
constexpr uint16_t kTxQueue = 1;

// The RST the device owes a refused or unroutable packet: from the address the packet was
// sent to, back to the guest's port (5.10.6.4), nothing else set.
Header RstFor(const Header& packet, uint64_t guest_cid) {
  Header rst{};
  rst.src_cid = packet.dst_cid;
  rst.dst_cid = guest_cid;
  rst.src_port = packet.dst_port;
  rst.dst_port = packet.src_port;
  rst.type = vsock::kTypeStream;
  rst.op = vsock::kOpRst;
  return rst;
}

struct Harness {
  explicit Harness(uint64_t cid) : guest_cid(cid) {}

  bool Start(const std::string& path) {
    auto dev = CreateVirtioVsock({guest_cid, path}, &loop);
    if (!dev) return false;
    device = *dev;
    rx.Configure(&rxq);
    tx.Configure(&txq);
    ev.Configure(&evq);
    for (Queue* q : queues) {
      if (!q->Activate(&rx.memory(), false, true)) return false;
    }
    ActiveQueues active;
    active.memory = &rx.memory();
    active.features = device->device_features();
    active.queues = std::span<Queue* const>(queues);
    active.signal_used = [](uint16_t) {};
    active.mark_broken = [](const std::string&) { std::abort(); };
    return static_cast<bool>(device->Activate(std::move(active)));
  }

  // A tx packet of `bytes` in `pieces` descriptors; what the device owes for it is queued.
  void Send(const std::vector<uint8_t>& bytes, size_t pieces) {
    std::vector<kite::testing::FakeBuffer> chain;
    size_t at = 0;
    for (size_t i = 0; i < pieces; ++i) {
      size_t n = i + 1 < pieces ? (bytes.size() - at) / (pieces - i) : bytes.size() - at;
      uint64_t addr = tx.Alloc(static_cast<uint32_t>(n == 0 ? 1 : n));
      if (n != 0) tx.WriteBytes(addr, bytes.data() + at, n);
      chain.push_back({addr, static_cast<uint32_t>(n), false});
      at += n;
    }
    tx.AddChain(chain);
    tx.Publish();
    ++tx_sent;
    const iovec whole{const_cast<uint8_t*>(bytes.data()), bytes.size()};
    const vsock::TxPacket p = vsock::ParseTxPacket({&whole, 1}, guest_cid);
    if (p.verdict == vsock::TxVerdict::kShortHeader || p.verdict == vsock::TxVerdict::kSpoofedCid ||
        p.hdr.op == vsock::kOpRst) {
      return;
    }
    owed.push_back(RstFor(p.hdr, guest_cid));
  }

  void GiveRx(uint32_t len) {
    uint64_t addr = rx.Alloc(len == 0 ? 1 : len);
    uint16_t head = rx.AddChain({{addr, len, true}});
    rx_buffers[head] = {addr, len};
    rx.Publish();
  }

  void Turn() {
    loop.restart();
    loop.poll();
    Collect();
  }

  void Collect() {
    while (auto used = tx.PopUsed()) {
      if (used->len != 0) std::abort();
      ++tx_back;
    }
    while (auto used = rx.PopUsed()) {
      auto it = rx_buffers.find(static_cast<uint16_t>(used->id));
      if (it == rx_buffers.end() || owed.empty()) std::abort();  // never spoken unasked
      const auto [addr, len] = it->second;
      rx_buffers.erase(it);
      const Header want = owed.front();
      owed.pop_front();
      if (len < sizeof(Header)) {
        if (used->len != 0) std::abort();
        continue;
      }
      if (used->len != sizeof(Header)) std::abort();
      const Header got = rx.ReadObj<Header>(addr);
      if (std::memcmp(&got, &want, sizeof(Header)) != 0) std::abort();
    }
  }

  const uint64_t guest_cid;
  asio::io_context loop;
  kite::testing::FakeDriver rx{{.queue_size = 64, .low_size = 1u << 20, .high_size = 1u << 20}};
  kite::testing::FakeDriver tx{&rx, 64};
  kite::testing::FakeDriver ev{&rx, 8};
  Queue rxq{64}, txq{64}, evq{8};
  std::vector<Queue*> queues{&rxq, &txq, &evq};
  std::shared_ptr<VirtioDevice> device;
  std::map<uint16_t, std::pair<uint64_t, uint32_t>> rx_buffers;  // head -> address, length
  std::deque<Header> owed;                                       // RSTs not yet seen, in order
  uint32_t tx_sent = 0, tx_back = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = kite::fuzz::MakePrivateDir("kite-vsock-fuzz");
  if (dir.empty()) std::abort();
  kite::SetLogLevel(kite::LogLevel::Off);  // refused packets are the point: no log lines
  FuzzedDataProvider in(data, size);
  Harness h(in.ConsumeIntegralInRange<uint64_t>(3, 0xfffffffe));
  if (!h.Start(dir + "/v.sock")) std::abort();
  // Up to 20 tx packets (3 descriptors at most each) and 40 rx buffers, then one more buffer per
  // RST owed (at most 20): the driver's 64 descriptors per queue never run out.
  int packets = 0, buffers = 0;
  for (int step = 0; step < 96 && in.remaining_bytes() > 0; ++step) {
    switch (in.ConsumeIntegralInRange(0, 3)) {
      case 0: {
        if (packets == 20) break;
        ++packets;
        const size_t pieces = in.ConsumeIntegralInRange<size_t>(1, 3);
        h.Send(in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 96)), pieces);
        h.device->ProcessQueue(kTxQueue);
        break;
      }
      case 1:
        if (buffers == 40) break;
        ++buffers;
        h.GiveRx(in.ConsumeIntegralInRange<uint32_t>(0, 96));
        break;
      case 2:
        h.device->ProcessQueue(kRxQueue);
        break;
      default:
        h.Turn();
        break;
    }
  }
  // Room for everything still owed, then the device's turn until it is quiet.
  for (size_t i = h.owed.size(); i > 0; --i) h.GiveRx(sizeof(Header) + 16);
  h.device->ProcessQueue(kTxQueue);
  h.device->ProcessQueue(kRxQueue);
  for (int i = 0; i < 4; ++i) h.Turn();
  if (h.tx_back != h.tx_sent) std::abort();  // every tx chain came back
  if (!h.owed.empty()) std::abort();         // every RST owed was sent
  h.device->Reset();
  return 0;
}
