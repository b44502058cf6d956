// B6 (shared/BENCHMARKS.md): the virtio-net transmit path, fake driver → split virtqueue →
// VirtioNet → tap backend → the host kernel, with 64 KiB TSO frames or 1500-byte frames.
//
//   b6_virtio_net [tso|mtu] [seconds]      (needs root: it creates the tap "kiteb6")
//
// The driver keeps the TX queue full (256 chains: a 12-byte header + one frame each), kicks,
// and reaps used entries, for `seconds`. The frames are Ethernet/IPv4/TCP with a partial
// checksum (NEEDS_CSUM); TSO frames carry gso_type TCPv4, gso_size 1448. Their destination MAC
// is not the tap's, so after the tap the kernel receives each frame on the tap interface and
// drops it at the IP layer (PACKET_OTHERHOST): what is measured is the device path plus the
// tap write plus the kernel's receive up to IP, not TCP. To show the frames really arrive, a
// second thread reads them from a packet socket bound to the tap and counts them (it may miss
// some when its socket buffer overflows; the count is printed).
//
// Output, one line: mode=... frames=... gbit_s=... cpu_gbit_s=... ns_cpu_per_kib=...
// drained_pct=... where cpu_* use this (sending) thread's user+system time (getrusage
// RUSAGE_THREAD), i.e. "Gbit/s per host core" for the sender side.
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
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"

using namespace kite;
using namespace kite::virtio;

namespace {

constexpr uint16_t kQueueSize = 256;
constexpr const char* kTapName = "kiteb6";

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
  uint8_t ip[20] = {0x45,
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

struct Drain {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> frames{0};
  std::atomic<uint64_t> bytes{0};
  double cpu = 0;
};

void DrainLoop(int fd, Drain* drain) {
  std::vector<uint8_t> buf(1 << 17);
  while (!drain->stop.load(std::memory_order_relaxed)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t n;
    while ((n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC)) > 0) {
      drain->frames.fetch_add(1, std::memory_order_relaxed);
      drain->bytes.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    }
  }
  drain->cpu = ThreadCpuSeconds();
}

int Run(bool tso, double seconds) {
  asio::io_context loop;
  auto backend = OpenTapBackend({.name = kTapName}, &loop);
  if (!backend) {
    std::fprintf(stderr, "b6: %s (B6 needs root: CAP_NET_ADMIN and /dev/net/tun)\n",
                 backend.error().message().c_str());
    return 2;
  }
  UniqueFd packet(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(if_nametoindex(kTapName));
  int rcvbuf = 64 << 20;
  if (!packet || bind(packet.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    std::perror("b6: packet socket");
    return 2;
  }
  setsockopt(packet.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));

  auto created = CreateVirtioNet(std::move(*backend), NetOptions{.queue_size = kQueueSize}, &loop);
  if (!created) {
    std::fprintf(stderr, "b6: %s\n", created.error().message().c_str());
    return 1;
  }
  std::shared_ptr<VirtioDevice> device = *created;
  testing::FakeDriver rx({.queue_size = kQueueSize});
  testing::FakeDriver tx({.queue_size = kQueueSize});
  Queue rx_queue(kQueueSize), tx_queue(kQueueSize);
  rx.Configure(&rx_queue);
  tx.Configure(&tx_queue);
  if (!rx_queue.Activate(&rx.memory(), false, true) ||
      !tx_queue.Activate(&tx.memory(), false, true)) {
    std::fprintf(stderr, "b6: queue activation failed\n");
    return 1;
  }
  std::vector<Queue*> queues{&rx_queue, &tx_queue};
  ActiveQueues active;
  active.memory = &tx.memory();
  active.features = device->device_features() & ~FeatureBit(kFeatureEventIdx);
  active.queues = queues;
  active.signal_used = [](uint16_t) {};
  active.mark_broken = [](const std::string& why) {
    std::fprintf(stderr, "b6: %s\n", why.c_str());
  };
  if (!device->AcceptFeatures(active.features) || !device->Activate(std::move(active))) {
    std::fprintf(stderr, "b6: activation failed\n");
    return 1;
  }

  std::vector<uint8_t> frame = MakeFrame(tso ? 65536 : 1514);
  uint64_t frame_addr = tx.Alloc(static_cast<uint32_t>(frame.size()));
  tx.WriteBytes(frame_addr, frame.data(), frame.size());
  net::Header hdr{};
  hdr.flags = net::kHdrFlagNeedsCsum;
  hdr.csum_start = 34;
  hdr.csum_offset = 16;
  if (tso) {
    hdr.gso_type = net::kGsoTcpv4;
    hdr.gso_size = 1448;
    hdr.hdr_len = 54;
  }
  std::vector<uint64_t> headers;
  for (int i = 0; i < kQueueSize / 2; ++i) {
    headers.push_back(tx.Alloc(sizeof(hdr)));
    tx.WriteObj(headers.back(), hdr);
  }

  Drain drain;
  std::thread reader(DrainLoop, packet.get(), &drain);
  uint64_t frames = 0, bytes = 0;
  size_t in_queue = 0, next_header = 0;
  auto start = std::chrono::steady_clock::now();
  double cpu_start = ThreadCpuSeconds();
  auto deadline = start + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    for (int batch = 0; batch < 64; ++batch) {
      while (in_queue < kQueueSize / 2) {  // two descriptors per chain
        uint64_t h = headers[next_header++ % headers.size()];
        tx.AddChain(
            {{h, sizeof(hdr), false}, {frame_addr, static_cast<uint32_t>(frame.size()), false}});
        ++in_queue;
      }
      tx.Publish();
      device->ProcessQueue(1);
      loop.poll();
      while (auto used = tx.PopUsed()) {
        --in_queue;
        ++frames;
        bytes += frame.size();
      }
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu = ThreadCpuSeconds() - cpu_start;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  drain.stop = true;
  reader.join();
  DeviceCounters c = device->counters();
  std::printf(
      "mode=%s frame_bytes=%zu frames=%llu wall_s=%.3f gbit_s=%.2f cpu_s=%.3f cpu_gbit_s=%.2f "
      "ns_cpu_per_kib=%.1f drained_pct=%.1f drain_cpu_s=%.3f device_errors=%llu "
      "device_drops=%llu\n",
      tso ? "tso64k" : "mtu1500", frame.size(), static_cast<unsigned long long>(frames), wall,
      bytes * 8 / wall / 1e9, cpu, bytes * 8 / cpu / 1e9, cpu * 1e9 / (bytes / 1024.0),
      frames ? 100.0 * drain.frames.load() / frames : 0.0, drain.cpu,
      static_cast<unsigned long long>(c.errors), static_cast<unsigned long long>(c.drops));
  return c.errors == 0 && c.drops == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "tso";
  double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
  if (mode != "tso" && mode != "mtu") {
    std::fprintf(stderr, "usage: b6_virtio_net [tso|mtu] [seconds]\n");
    return 2;
  }
  return Run(mode == "tso", seconds);
}
