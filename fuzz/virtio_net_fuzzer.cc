// libFuzzer target for virtio-net headers (src/virtio/net_header.cc) and the device paths that
// act on them (net.cc TX, net_rx.cc RX): first the pure checks on one header against a feature
// set and frame length, then a program against a live device whose backend (fuzz_net_backend.h)
// takes vnet headers or not, receives directly (the tap's way) or through a FrameSink
// (libslirp's way), and whose features are a fuzzed subset of what it offers. Program steps:
// TX chains (header, frame length, how the bytes are split, a writable descriptor slipped
// in), RX chains of fuzzed sizes, frames injected from the network side with fuzzed headers
// and lengths (up to beyond the largest frame), backend busy/writable, link up/down, and
// collecting used entries. Checks beyond the sanitizers: what CheckTxHeader accepts keeps its
// promises (also checked on every frame the backend gets), CheckRxHeader never lets through an
// offload that was not negotiated, and no used length exceeds the chain's writable room.
#include <fuzzer/FuzzedDataProvider.h>

#include <asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

#include "base/log.h"
#include "fuzz_net_backend.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/net.h"
#include "virtio/net_header.h"
#include "virtio/queue.h"

namespace {

using namespace kite;
using namespace kite::virtio;

constexpr uint16_t kQueueSize = 16;
constexpr uint64_t kAllocBudget = 3 << 20;  // of the fake driver's 4 MiB low region

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "virtio_net_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

net::Header TakeHeader(FuzzedDataProvider& in) {
  net::Header h{};
  in.ConsumeData(&h, sizeof(h));
  return h;
}

// The pure checks and what they promise.
void CheckHeaders(FuzzedDataProvider& in) {
  net::Header tx = TakeHeader(in);
  uint64_t features = in.ConsumeIntegral<uint64_t>();
  size_t frame_len = in.ConsumeIntegralInRange<size_t>(0, 70000);
  (void)NetFeaturesConsistent(features);
  (void)NetDeviceFeatures(in.ConsumeBool(), features);
  if (CheckTxHeader(&tx, features, frame_len) == TxHeaderVerdict::kOk) {
    if (tx.flags & ~net::kHdrFlagNeedsCsum) Fail("TX flags beyond NEEDS_CSUM");
    if ((tx.flags & net::kHdrFlagNeedsCsum) &&
        size_t{tx.csum_start} + tx.csum_offset + 2 > frame_len) {
      Fail("TX checksum offsets beyond the frame");
    }
    if (tx.gso_type != net::kGsoNone && (tx.gso_size == 0 || !tx.flags)) Fail("TX GSO fields");
  }
  net::Header rx = TakeHeader(in);
  if (CheckRxHeader(&rx, features)) {
    bool guest_csum = features & FeatureBit(net::kFeatureGuestCsum);
    if (!guest_csum && (rx.flags & (net::kHdrFlagNeedsCsum | net::kHdrFlagDataValid))) {
      Fail("RX checksum flags without GUEST_CSUM");
    }
    uint8_t gso = rx.gso_type;
    if ((gso == net::kGsoTcpv4 && !(features & FeatureBit(net::kFeatureGuestTso4))) ||
        (gso == net::kGsoTcpv6 && !(features & FeatureBit(net::kFeatureGuestTso6))) ||
        (gso != net::kGsoNone && gso != net::kGsoTcpv4 && gso != net::kGsoTcpv6)) {
      Fail("RX segmentation that was not negotiated");
    }
  }
}

// The driver side of both queues, with bookkeeping of descriptors and writable room.
struct Driver {
  testing::FakeDriver rx{{.queue_size = kQueueSize}};
  testing::FakeDriver tx{&rx, kQueueSize};
  Queue rx_queue{kQueueSize};
  Queue tx_queue{kQueueSize};
  std::map<uint16_t, uint32_t> rx_room;  // head -> writable bytes
  int rx_descs = 0, tx_descs = 0;
  std::map<uint16_t, int> rx_chain_descs, tx_chain_descs;
  uint64_t allocated = 0;

  uint64_t Alloc(uint32_t len) {
    allocated += len + 16;
    return rx.Alloc(len ? len : 1);
  }
  void Collect() {
    while (auto used = rx.PopUsed()) {
      auto room = rx_room.find(static_cast<uint16_t>(used->id));
      if (room == rx_room.end()) Fail("RX used entry for a chain not offered");
      if (used->len > room->second) Fail("RX used length beyond the chain's writable room");
      rx_room.erase(room);
      rx_descs -= rx_chain_descs[static_cast<uint16_t>(used->id)];
    }
    while (auto used = tx.PopUsed()) {
      tx_descs -= tx_chain_descs[static_cast<uint16_t>(used->id)];
      if (used->len != 0) Fail("TX used length not 0");
    }
  }
};

void AddTx(FuzzedDataProvider& in, Driver& d) {
  size_t pieces = in.ConsumeIntegralInRange<size_t>(1, 3);
  bool indirect = in.ConsumeBool();
  if (d.tx_descs + (indirect ? 1 : static_cast<int>(pieces)) > kQueueSize) return;
  net::Header h = TakeHeader(in);
  uint32_t frame = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 1600)
                                    : in.ConsumeIntegralInRange<uint32_t>(0, 66000);
  if (d.allocated + frame + 64 > kAllocBudget) return;
  std::vector<uint8_t> bytes(sizeof(h) + frame, 0x42);
  std::memcpy(bytes.data(), &h, sizeof(h));
  std::vector<testing::FakeBuffer> bufs;
  size_t at = 0;
  for (size_t i = 0; i < pieces; ++i) {
    size_t left = bytes.size() - at;
    size_t len = i + 1 == pieces ? left : in.ConsumeIntegralInRange<size_t>(0, left);
    uint64_t addr = d.Alloc(static_cast<uint32_t>(len));
    if (len) d.rx.WriteBytes(addr, bytes.data() + at, len);
    bool writable = in.ConsumeIntegral<uint8_t>() == 0xff;  // rarely: a device-writable one
    bufs.push_back({addr, static_cast<uint32_t>(len), writable});
    at += len;
  }
  uint16_t head = indirect ? d.tx.AddIndirectChain(bufs) : d.tx.AddChain(bufs);
  d.tx_chain_descs[head] = indirect ? 1 : static_cast<int>(pieces);
  d.tx_descs += d.tx_chain_descs[head];
  d.tx.Publish();
}

void AddRx(FuzzedDataProvider& in, Driver& d) {
  size_t pieces = in.ConsumeIntegralInRange<size_t>(1, 3);
  if (d.rx_descs + static_cast<int>(pieces) > kQueueSize) return;
  std::vector<testing::FakeBuffer> bufs;
  uint32_t room = 0;
  for (size_t i = 0; i < pieces; ++i) {
    uint32_t len = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 64)
                                    : in.ConsumeIntegralInRange<uint32_t>(0, 4096);
    if (d.allocated + len > kAllocBudget) return;
    bufs.push_back({d.Alloc(len), len, true});
    room += len;
  }
  uint16_t head = d.rx.AddChain(bufs);
  d.rx_room[head] = room;
  d.rx_chain_descs[head] = static_cast<int>(pieces);
  d.rx_descs += static_cast<int>(pieces);
  d.rx.Publish();
}

std::vector<uint8_t> MakeFrame(FuzzedDataProvider& in, bool vnet) {
  net::Header h = TakeHeader(in);
  uint32_t len = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 1600)
                                  : in.ConsumeIntegralInRange<uint32_t>(0, 70000);
  std::vector<uint8_t> frame(len, 0x17);
  if (vnet)
    frame.insert(frame.begin(), reinterpret_cast<uint8_t*>(&h),
                 reinterpret_cast<uint8_t*>(&h) + sizeof(h));
  return frame;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kite::SetLogLevel(kite::LogLevel::Off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  CheckHeaders(in);

  auto state = std::make_shared<fuzz::FuzzNetState>();
  state->vnet = in.ConsumeBool();
  state->direct = state->vnet && in.ConsumeBool();  // the tap reads directly, with headers
  state->offloads = in.ConsumeIntegral<uint64_t>();
  asio::io_context loop;
  NetOptions options{.mac = {0x52, 0x54, 0, 0x12, 0x34, 0x56}, .queue_size = kQueueSize};
  auto dev = CreateVirtioNet(std::make_unique<fuzz::FuzzNetBackend>(state), options, &loop);
  if (!dev) std::abort();
  uint64_t features = (*dev)->device_features() & in.ConsumeIntegral<uint64_t>();
  features |= FeatureBit(kFeatureVersion1);
  if (!(*dev)->AcceptFeatures(features)) features &= ~(kNetOffloadFeatures | kNetCtrlFeatures);

  Driver d;
  d.rx.Configure(&d.rx_queue);
  d.tx.Configure(&d.tx_queue);
  bool event_idx = features & FeatureBit(kFeatureEventIdx);
  bool indirect = features & FeatureBit(kFeatureIndirectDesc);
  if (!d.rx_queue.Activate(&d.rx.memory(), event_idx, indirect)) std::abort();
  if (!d.tx_queue.Activate(&d.rx.memory(), event_idx, indirect)) std::abort();
  Queue ctrl_queue(64);  // not enabled: fuzz/virtio_net_ctrl_fuzzer.cc takes its commands
  std::vector<Queue*> queues{&d.rx_queue, &d.tx_queue, &ctrl_queue};
  ActiveQueues active;
  active.memory = &d.rx.memory();
  active.features = features;
  active.queues = queues;
  active.signal_used = [](uint16_t) {};
  active.mark_broken = [](const std::string&) {};
  if (!(*dev)->Activate(std::move(active))) std::abort();

  for (int steps = 0; in.remaining_bytes() > 0 && steps < 64; ++steps) {
    switch (in.ConsumeIntegralInRange<int>(0, 7)) {
      case 0:
        AddTx(in, d);
        (*dev)->ProcessQueue(1);
        break;
      case 1:
        AddRx(in, d);
        (*dev)->ProcessQueue(0);
        break;
      case 2:
        fuzz::FuzzNetBackend::Inject(*state, MakeFrame(in, state->vnet));
        break;
      case 3:
        state->full = true;
        break;
      case 4:
        fuzz::FuzzNetBackend::Writable(*state);
        break;
      case 5:
        (*dev)->SetLink(in.ConsumeBool());
        break;
      case 6:
        loop.restart();
        loop.poll();
        break;
      default:
        d.Collect();
        break;
    }
  }
  loop.restart();
  loop.poll();
  d.Collect();
  (*dev)->Reset();
  return 0;
}
