// B6 (shared/BENCHMARKS.md): the virtio-net device path between a fake driver and a tap, with
// 64 KiB TSO frames or 1514-byte frames, in either direction.
//
//   b6_virtio_net [--dir tx|rx] [--queues 1|2|4] [--mrg on|off] [tso|mtu] [seconds]
//                                        (needs root: it creates the tap "kiteb6")
//
// TX (default): fake driver → split virtqueue → VirtioNet → tap → the host kernel. The driver
// keeps the TX queue full (a 12-byte header + one frame per chain), kicks and reaps used
// entries. The frames are Ethernet/IPv4/TCP with a partial checksum (NEEDS_CSUM); TSO frames
// carry gso_type TCPv4, gso_size 1448. Their destination MAC is not the tap's, so the kernel
// receives each frame on the tap interface and drops it at IP (PACKET_OTHERHOST): measured is
// the device path plus the tap write plus the kernel's receive up to IP. A second thread reads
// the frames from a packet socket bound to the tap to show they arrive (drained_pct).
//
// RX: the host kernel → tap → VirtioNet → the fake driver's RX queue. An injector thread
// transmits frames *on* the tap interface through an AF_PACKET socket bound to it with
// PACKET_VNET_HDR (and PACKET_QDISC_BYPASS): each send carries a virtio_net_hdr, so a 64 KiB
// TCPv4 GSO frame enters the kernel as one GSO skb and, because the driver negotiated
// GUEST_TSO4 (TUNSETOFFLOAD), reaches the tap's queue unsegmented, exactly as a host TCP flow
// routed to the tap would, but without a TCP peer to emulate. The device reads the frames
// from the tap fd into the guest buffers. The driver keeps the RX queue stocked like Linux:
// with MRG_RXBUF page-ish buffers (4096 bytes for tso, 1536 for mtu), without it one 68 KiB
// "big" buffer per frame; it reaps used entries, reads num_buffers from each frame's header
// and counts bytes. The injector keeps at most kWindow frames ahead of the driver (the tap
// queue holds 500; beyond that the kernel would drop), so nothing is lost (tap_drops).
//
// --queues N: a multiqueue tap with N queue pairs, all put into use through the control queue
// (VQ_PAIRS_SET), one fake driver per queue. TX fills every pair's queue; RX sends 8 flows per
// queue (TCP source ports) so the tap spreads them (per_queue_frames). Every pair is served by
// kite's one event-loop thread, as in the VMM: the figure says what N pairs cost that thread.
//
// CPU: cpu_* use the main thread's user+system time (getrusage RUSAGE_THREAD): the device
// path, the tap read (the kernel's copy into guest memory) or write, the event loop and the
// fake driver's own work (refill, reap) — "Gbit/s per host core" for kite's side. The other
// thread's CPU is reported beside it (drain_cpu_s for TX, inject_cpu_s for RX: the AF_PACKET
// send and the kernel's transmit into the tap), not included.
//
// Output, one line: dir=tx|rx mode=... frames=... gbit_s=... cpu_gbit_s=... ns_cpu_per_kib=...
// and per direction drained_pct (tx) or inject_cpu_s, copied_pct, avg_frame, tap_drops (rx).
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_device.h"

using namespace kite;
using namespace kite::virtio;

namespace {

constexpr uint16_t kQueueSize = 256;
constexpr const char* kTapName = "kiteb6";
constexpr uint64_t kWindow = 256;  // RX: frames the injector may be ahead of the driver
// RX TSO frames: 45 full segments, like the largest TSO frames Linux TCP builds. The kernel
// segments a GSO skb of 64 KiB or more in software (gso_max_size), so 65536 cannot be used.
constexpr size_t kRxTsoFrame = 54 + 45 * 1448;

struct Options {
  bool rx = false;
  bool tso = true;
  bool mrg = true;
  double seconds = 3.0;
  int queues = 1;  // queue pairs: a multiqueue tap, every pair driven (VQ_PAIRS_SET)
};

double ThreadCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Ethernet + IPv4 + TCP headers in front of `size - 54` bytes of payload.
std::vector<uint8_t> MakeFrame(size_t size) {
  std::vector<uint8_t> f(size, 0x5a);
  const uint8_t dst[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};  // not the tap's MAC
  const uint8_t src[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
  std::memcpy(&f[0], dst, 6);
  std::memcpy(&f[6], src, 6);
  f[12] = 0x08, f[13] = 0x00;
  uint16_t ip_len = static_cast<uint16_t>(size - 14);
  const uint8_t ip[20] = {0x45,
                          0,
                          static_cast<uint8_t>(ip_len >> 8),
                          static_cast<uint8_t>(ip_len),
                          0,
                          0,
                          0x40,
                          0,
                          64,
                          6,
                          0,
                          0,
                          10,
                          0,
                          0,
                          2,
                          10,
                          0,
                          0,
                          1};
  std::memcpy(&f[14], ip, sizeof(ip));
  uint8_t tcp[20] = {0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff};
  std::memcpy(&f[34], tcp, sizeof(tcp));
  return f;
}

// The header both directions use: partial TCP checksum, and TCPv4 GSO for TSO frames.
net::Header FrameHeader(bool tso) {
  net::Header hdr{};
  hdr.flags = net::kHdrFlagNeedsCsum;
  hdr.csum_start = 34;
  hdr.csum_offset = 16;
  if (tso) {
    hdr.gso_type = net::kGsoTcpv4;
    hdr.gso_size = 1448;
    hdr.hdr_len = 54;
  }
  return hdr;
}

// A packet socket bound to the tap (both directions use one: TX reads, RX sends).
UniqueFd BindPacketSocket() {
  UniqueFd fd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(if_nametoindex(kTapName));
  if (!fd || bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    std::perror("b6: packet socket");
    return UniqueFd();
  }
  return fd;
}

uint64_t TapTxDropped() {
  std::ifstream in(std::string("/sys/class/net/") + kTapName + "/statistics/tx_dropped");
  uint64_t value = 0;
  in >> value;
  return value;
}

// The device on the tap with every queue pair activated by fake drivers (one per queue), and
// with more than one pair the control queue, through which all pairs are put into use.
struct Rig {
  asio::io_context loop;
  std::shared_ptr<VirtioDevice> device;
  std::vector<std::unique_ptr<testing::FakeDriver>> rx, tx;  // per pair
  std::unique_ptr<testing::FakeDriver> ctrl;
  std::vector<std::unique_ptr<Queue>> owned;
  std::vector<Queue*> queues;
  uint64_t signals = 0;
};

Queue* AddQueue(Rig* rig, testing::FakeDriver* driver) {
  rig->owned.push_back(std::make_unique<Queue>(driver->queue_size()));
  driver->Configure(rig->owned.back().get());
  if (!rig->owned.back()->Activate(&driver->memory(), false, true)) return nullptr;
  rig->queues.push_back(rig->owned.back().get());
  return rig->queues.back();
}

// VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET through the control queue, as ethtool -L makes Linux do.
bool SetPairs(Rig* rig, int pairs) {
  testing::FakeDriver& d = *rig->ctrl;
  uint8_t request[4] = {net::kCtrlMq, net::kCtrlMqVqPairsSet, static_cast<uint8_t>(pairs), 0};
  uint64_t req = d.Alloc(sizeof(request)), ack = d.Alloc(1);
  d.WriteBytes(req, request, sizeof(request));
  d.WriteObj<uint8_t>(ack, 0xee);
  d.AddChain({{req, sizeof(request), false}, {ack, 1, true}});
  d.Publish();
  rig->device->ProcessQueue(static_cast<uint16_t>(rig->queues.size() - 1));
  rig->loop.poll();
  return d.PopUsed().has_value() && d.ReadObj<uint8_t>(ack) == net::kCtrlOk;
}

bool SetUp(Rig* rig, bool mrg, int pairs) {
  auto backends = OpenTapQueues(
      {.name = kTapName, .bridge = "", .queues = static_cast<uint32_t>(pairs)}, &rig->loop);
  if (!backends) {
    std::fprintf(stderr, "b6: %s (B6 needs root: CAP_NET_ADMIN and /dev/net/tun)\n",
                 backends.error().message().c_str());
    return false;
  }
  auto created =
      CreateVirtioNet(std::move(*backends), NetOptions{.queue_size = kQueueSize}, &rig->loop);
  if (!created) {
    std::fprintf(stderr, "b6: %s\n", created.error().message().c_str());
    return false;
  }
  rig->device = *created;
  for (int k = 0; k < pairs; ++k) {
    rig->rx.push_back(std::make_unique<testing::FakeDriver>(
        testing::FakeDriverOptions{.queue_size = kQueueSize, .low_size = 64ull << 20}));
    rig->tx.push_back(std::make_unique<testing::FakeDriver>(
        testing::FakeDriverOptions{.queue_size = kQueueSize}));
    if (!AddQueue(rig, rig->rx.back().get()) || !AddQueue(rig, rig->tx.back().get())) {
      std::fprintf(stderr, "b6: queue activation failed\n");
      return false;
    }
  }
  rig->ctrl = std::make_unique<testing::FakeDriver>(testing::FakeDriverOptions{.queue_size = 64});
  if (!AddQueue(rig, rig->ctrl.get())) return false;
  ActiveQueues active;
  active.memory = &rig->rx[0]->memory();  // unused by virtio-net: its chains carry host iovecs
  active.features = rig->device->device_features() & ~FeatureBit(kFeatureEventIdx);
  if (!mrg) active.features &= ~FeatureBit(net::kFeatureMrgRxbuf);
  active.queues = rig->queues;
  active.signal_used = [rig](uint16_t) { ++rig->signals; };
  active.mark_broken = [](const std::string& why) {
    std::fprintf(stderr, "b6: %s\n", why.c_str());
  };
  if (!rig->device->AcceptFeatures(active.features) || !rig->device->Activate(std::move(active))) {
    std::fprintf(stderr, "b6: activation failed\n");
    return false;
  }
  if (pairs > 1 && !SetPairs(rig, pairs)) {
    std::fprintf(stderr, "b6: VQ_PAIRS_SET %d refused\n", pairs);
    return false;
  }
  return true;
}

// --- TX ---

struct Drain {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> frames{0};
  double cpu = 0;
};

void DrainLoop(int fd, Drain* drain) {
  std::vector<uint8_t> buf(1 << 17);
  while (!drain->stop.load(std::memory_order_relaxed)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    while (recv(fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC) > 0) {
      drain->frames.fetch_add(1, std::memory_order_relaxed);
    }
  }
  drain->cpu = ThreadCpuSeconds();
}

int RunTx(const Options& o) {
  Rig rig;
  if (!SetUp(&rig, o.mrg, o.queues)) return 2;
  UniqueFd packet = BindPacketSocket();
  if (!packet) return 2;
  int rcvbuf = 64 << 20;
  setsockopt(packet.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
  std::vector<uint8_t> frame = MakeFrame(o.tso ? 65536 : 1514);
  net::Header hdr = FrameHeader(o.tso);
  // Per pair: the frame and a header per chain in that pair's driver memory.
  struct TxPair {
    testing::FakeDriver* driver;
    uint64_t frame_addr;
    std::vector<uint64_t> headers;
    size_t in_queue = 0, next_header = 0;
  };
  std::vector<TxPair> pairs;
  for (auto& driver : rig.tx) {
    TxPair p{driver.get(), driver->Alloc(static_cast<uint32_t>(frame.size())), {}};
    driver->WriteBytes(p.frame_addr, frame.data(), frame.size());
    for (int i = 0; i < kQueueSize / 2; ++i) {
      p.headers.push_back(driver->Alloc(sizeof(hdr)));
      driver->WriteObj(p.headers.back(), hdr);
    }
    pairs.push_back(std::move(p));
  }

  Drain drain;
  std::thread reader(DrainLoop, packet.get(), &drain);
  uint64_t frames = 0, bytes = 0;
  auto start = std::chrono::steady_clock::now();
  double cpu_start = ThreadCpuSeconds();
  auto deadline = start + std::chrono::duration<double>(o.seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    for (int batch = 0; batch < 64; ++batch) {
      for (size_t k = 0; k < pairs.size(); ++k) {
        TxPair& p = pairs[k];
        while (p.in_queue < kQueueSize / 2) {  // two descriptors per chain
          uint64_t h = p.headers[p.next_header++ % p.headers.size()];
          p.driver->AddChain({{h, sizeof(hdr), false},
                              {p.frame_addr, static_cast<uint32_t>(frame.size()), false}});
          ++p.in_queue;
        }
        p.driver->Publish();
        rig.device->ProcessQueue(static_cast<uint16_t>(2 * k + 1));
      }
      rig.loop.poll();
      for (TxPair& p : pairs) {
        while (p.driver->PopUsed()) {
          --p.in_queue;
          ++frames;
          bytes += frame.size();
        }
      }
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu = ThreadCpuSeconds() - cpu_start;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  drain.stop = true;
  reader.join();
  DeviceCounters c = rig.device->counters();
  std::printf(
      "dir=tx queues=%d mode=%s frame_bytes=%zu frames=%llu wall_s=%.3f gbit_s=%.2f cpu_s=%.3f "
      "cpu_gbit_s=%.2f ns_cpu_per_kib=%.1f drained_pct=%.1f drain_cpu_s=%.3f device_errors=%llu "
      "device_drops=%llu\n",
      o.queues, o.tso ? "tso64k" : "mtu1500", frame.size(), static_cast<unsigned long long>(frames),
      wall, bytes * 8 / wall / 1e9, cpu, bytes * 8 / cpu / 1e9, cpu * 1e9 / (bytes / 1024.0),
      frames ? 100.0 * drain.frames.load() / frames : 0.0, drain.cpu,
      static_cast<unsigned long long>(c.errors), static_cast<unsigned long long>(c.drops));
  return c.errors == 0 && c.drops == 0 ? 0 : 1;
}

// --- RX ---

struct Injector {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> delivered{0};  // frames the driver has reaped
  std::atomic<int> progress{0};        // bumped with every reap; the injector waits on it
  uint64_t sent = 0;
  uint64_t send_errors = 0;
  double cpu = 0;
};

// Sends the packets in turn (several flows: a multiqueue tap spreads them over its queues).
void InjectLoop(int fd, const std::vector<std::vector<uint8_t>>* packets, Injector* in) {
  double cpu_start = ThreadCpuSeconds();
  while (!in->stop.load(std::memory_order_relaxed)) {
    int seen = in->progress.load(std::memory_order_acquire);
    // delivered may pass sent: the kernel sends a few frames of its own on a new interface.
    if (in->sent >= in->delivered.load(std::memory_order_acquire) + kWindow) {
      in->progress.wait(seen);
      continue;
    }
    const std::vector<uint8_t>& packet = (*packets)[in->sent % packets->size()];
    if (send(fd, packet.data(), packet.size(), 0) < 0) {
      if (in->send_errors++ == 0) std::perror("b6: injector send");
      std::this_thread::yield();
      continue;
    }
    ++in->sent;
  }
  in->cpu = ThreadCpuSeconds() - cpu_start;
}

// The driver's side of RX: keeps every free buffer posted, reaps used entries frame by frame.
struct RxDriver {
  testing::FakeDriver* driver = nullptr;
  uint32_t buf_len = 0;
  bool mrg = true;
  std::vector<uint64_t> free;
  std::vector<uint64_t> by_head = std::vector<uint64_t>(kQueueSize);
  uint16_t frame_left = 0;  // buffers still to come of the current frame
  uint64_t frames = 0, bytes = 0, bad = 0;

  bool Refill() {
    bool added = !free.empty();
    for (; !free.empty(); free.pop_back()) {
      by_head[driver->AddChain({{free.back(), buf_len, true}})] = free.back();
    }
    if (added) driver->Publish();
    return added;
  }
  void Reap() {
    while (auto used = driver->PopUsed()) {
      uint64_t addr = by_head[used->id];
      free.push_back(addr);
      if (frame_left == 0) {
        auto hdr = driver->ReadObj<net::Header>(addr);
        frame_left = mrg ? hdr.num_buffers : 1;
        if (frame_left == 0 || used->len < sizeof(hdr)) {
          ++bad;
          frame_left = 1;
        }
        ++frames;
        bytes += used->len - std::min<uint32_t>(used->len, sizeof(hdr));
      } else {
        bytes += used->len;
      }
      --frame_left;
    }
  }
};

int RunRx(const Options& o) {
  Rig rig;
  if (!SetUp(&rig, o.mrg, o.queues)) return 2;
  UniqueFd packet = BindPacketSocket();
  int one = 1, sndbuf = 64 << 20;
  if (!packet || setsockopt(packet.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0) {
    std::perror("b6: PACKET_VNET_HDR");
    return 2;
  }
  setsockopt(packet.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
  setsockopt(packet.get(), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
  std::vector<uint8_t> frame = MakeFrame(o.tso ? kRxTsoFrame : 1514);
  net::Header hdr = FrameHeader(o.tso);
  // One flow; with several queues 8 per queue (TCP source ports), which the tap spreads.
  std::vector<std::vector<uint8_t>> wires(o.queues == 1 ? 1 : 8 * o.queues);
  for (size_t f = 0; f < wires.size(); ++f) {
    std::vector<uint8_t>& wire = wires[f];  // PACKET_VNET_HDR: the 10-byte header
    wire.resize(10 + frame.size());
    std::memcpy(wire.data(), &hdr, 10);
    std::memcpy(wire.data() + 10, frame.data(), frame.size());
    uint16_t port = static_cast<uint16_t>(40000 + f);
    wire[10 + 34] = static_cast<uint8_t>(port >> 8);
    wire[10 + 35] = static_cast<uint8_t>(port);
  }

  std::vector<RxDriver> rxs(rig.rx.size());
  for (size_t k = 0; k < rxs.size(); ++k) {
    RxDriver& rx = rxs[k];
    rx.driver = rig.rx[k].get();
    rx.buf_len = o.mrg ? (o.tso ? 4096u : 1536u) : 69632u;
    rx.mrg = o.mrg;
    for (int i = 0; i < kQueueSize; ++i) rx.free.push_back(rx.driver->Alloc(rx.buf_len));
    rx.Refill();
    rig.device->ProcessQueue(static_cast<uint16_t>(2 * k));
  }
  uint64_t drops_before = TapTxDropped();

  Injector in;
  std::thread injector(InjectLoop, packet.get(), &wires, &in);
  auto start = std::chrono::steady_clock::now();
  double cpu_start = ThreadCpuSeconds();
  auto deadline = start + std::chrono::duration<double>(o.seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    // One handler (one device run of at most 64 frames, or a wake-up), then reap and refill,
    // as a guest's NAPI poll refills while the device works.
    rig.loop.restart();
    rig.loop.run_one_for(std::chrono::milliseconds(5));  // sleeps until the tap is readable
    uint64_t delivered = 0;
    for (size_t k = 0; k < rxs.size(); ++k) {
      rxs[k].Reap();
      if (rxs[k].Refill()) rig.device->ProcessQueue(static_cast<uint16_t>(2 * k));
      delivered += rxs[k].frames;
    }
    in.delivered.store(delivered, std::memory_order_release);
    in.progress.fetch_add(1, std::memory_order_release);
    in.progress.notify_one();
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu = ThreadCpuSeconds() - cpu_start;
  in.stop = true;
  in.progress.fetch_add(1);
  in.progress.notify_all();
  injector.join();
  uint64_t tap_drops = TapTxDropped() - drops_before;
  RxDriver rx;  // the totals
  std::string per_queue;
  for (const RxDriver& q : rxs) {
    rx.frames += q.frames;
    rx.bytes += q.bytes;
    rx.bad += q.bad;
    rx.buf_len = q.buf_len;
    per_queue += (per_queue.empty() ? "" : "/") + std::to_string(q.frames);
  }
  DeviceCounters c = rig.device->counters();
  auto* net = dynamic_cast<VirtioNet*>(rig.device.get());
  uint64_t copied = net != nullptr ? net->rx_copied() : 0;
  double bits = static_cast<double>(rx.bytes) * 8;
  std::printf(
      "dir=rx queues=%d per_queue_frames=%s mode=%s mrg=%s buf_bytes=%u frame_bytes=%zu "
      "frames=%llu wall_s=%.3f gbit_s=%.2f "
      "cpu_s=%.3f cpu_gbit_s=%.2f ns_cpu_per_kib=%.1f inject_cpu_s=%.3f "
      "inject_gbit_s_per_core=%.2f avg_frame=%.0f copied_pct=%.1f interrupts=%llu tap_drops=%llu "
      "bad_frames=%llu sent=%llu send_errors=%llu device_errors=%llu device_drops=%llu\n",
      o.queues, per_queue.c_str(), o.tso ? "tso64k" : "mtu1500", o.mrg ? "on" : "off", rx.buf_len,
      frame.size(), static_cast<unsigned long long>(rx.frames), wall, bits / wall / 1e9, cpu,
      bits / cpu / 1e9, cpu * 1e9 / (rx.bytes / 1024.0), in.cpu, bits / in.cpu / 1e9,
      rx.frames ? static_cast<double>(rx.bytes) / rx.frames : 0.0,
      c.requests ? 100.0 * copied / c.requests : 0.0, static_cast<unsigned long long>(rig.signals),
      static_cast<unsigned long long>(tap_drops), static_cast<unsigned long long>(rx.bad),
      static_cast<unsigned long long>(in.sent), static_cast<unsigned long long>(in.send_errors),
      static_cast<unsigned long long>(c.errors), static_cast<unsigned long long>(c.drops));
  return rx.bad == 0 && c.errors == 0 && c.drops == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value = i + 1 < argc ? argv[i + 1] : "";
    if (arg == "--dir" && (value == "tx" || value == "rx")) {
      o.rx = value == "rx";
      ++i;
    } else if (arg == "--queues" && (value == "1" || value == "2" || value == "4")) {
      o.queues = std::atoi(value.c_str());
      ++i;
    } else if (arg == "--mrg" && (value == "on" || value == "off")) {
      o.mrg = value == "on";
      ++i;
    } else if (arg.rfind("--", 0) != 0) {
      positional.push_back(arg);
    } else {
      positional = {"?"};
      break;
    }
  }
  if (!positional.empty()) o.tso = positional[0] == "tso";
  if (positional.size() > 1) o.seconds = std::atof(positional[1].c_str());
  bool bad_mode = !positional.empty() && positional[0] != "tso" && positional[0] != "mtu";
  if (bad_mode || positional.size() > 2 || o.seconds <= 0) {
    std::fprintf(stderr,
                 "usage: b6_virtio_net [--dir tx|rx] [--queues 1|2|4] [--mrg on|off] [tso|mtu] "
                 "[seconds]\n");
    return 2;
  }
  return o.rx ? RunRx(o) : RunTx(o);
}
