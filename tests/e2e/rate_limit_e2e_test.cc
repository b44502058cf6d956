// Rate limits (BAD_INPUTS R1) with a Linux guest that saturates them, as a user would see them:
// the guest (kite's initramfs, kite.test=rate-limit) reads its disk with direct 64 KiB reads as
// fast as it can and downloads over TCP from a host server through the user network as fast as
// it can. Over the same window, measured from the host through the control socket
// (x-query-kite-stats: the bytes each device moved): the disk's reads keep to its bps= within
// 5 %, the NIC's received bytes to its bps= within 5 %, both limits held requests back (their
// `throttled` counters grew), and query-status answers meanwhile (B8: its round trips).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kDiskBps = 2 << 20;  // 2 MiB/s of reads
constexpr uint64_t kNetBps = 500'000;   // 500 kB/s each way

// A TCP server on 127.0.0.1 that sends zeros to the one client it accepts until stopped.
class Source {
 public:
  bool Start() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 1) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return false;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
    return true;
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  ~Source() { Stop(); }
  int port() const { return port_; }
  bool connected() const { return connected_; }

 private:
  void Serve() {
    pollfd p{fd_, POLLIN, 0};
    while (!stop_ && ::poll(&p, 1, 100) <= 0) {
    }
    if (stop_) return;
    int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    connected_ = true;
    int small = 64 << 10;  // a small send buffer: the sender follows the guest closely
    ::setsockopt(client, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    std::vector<char> zeros(64 << 10);
    pollfd c{client, POLLOUT, 0};
    while (!stop_) {
      if (::poll(&c, 1, 100) <= 0) continue;
      if (::send(client, zeros.data(), zeros.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
          errno != EAGAIN) {
        break;
      }
    }
    ::close(client);
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
};

struct DeviceBytes {
  uint64_t disk = 0, net = 0, disk_throttled = 0, net_throttled = 0;
};

DeviceBytes Bytes(QmpClient& qmp) {
  json r = qmp.Run(R"({"execute":"x-query-kite-stats"})");
  if (!r.contains("return")) return {};
  const json& d = r["return"]["devices"];
  return {d["vda"].value("bytes_read", uint64_t{0}), d["net0"].value("bytes_read", uint64_t{0}),
          d["vda"].value("throttled", uint64_t{0}), d["net0"].value("throttled", uint64_t{0})};
}

TEST(RateLimitE2e, LinuxGuest_SaturatesDiskAndNic_RatesHeld_ControlSocketResponsive) {
  KITE_REQUIRE_GUEST_USERSPACE();
  GuestImages images;
  ASSERT_NO_FATAL_FAILURE(FindGuestImages(&images));
  const std::string &kernel = images.kernel, &initrd = images.initrd;
  TempDir dir;
  {
    std::ofstream disk(dir.File("disk.raw"), std::ios::binary);
    disk.seekp((64 << 20) - 1);
    disk.put('\0');
  }
  Source source;
  ASSERT_TRUE(source.Start()) << "a TCP server on 127.0.0.1: " << strerror(errno);
  std::string serial = dir.File("serial.txt"), sock = dir.File("api.sock");
  KiteInBackground kite(
      {KITE_BINARY, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", "--cmdline",
       "console=ttyS0 reboot=k panic=1 quiet ip=dhcp kite.test=rate-limit "
       "kite.port=" +
           std::to_string(source.port()),
       "--disk",
       "path=" + dir.File("disk.raw") + ",format=raw,readonly=on,bps=" + std::to_string(kDiskBps),
       "--net", "user,bps=" + std::to_string(kNetBps), "--api-sock", sock, "--serial",
       "file:" + serial});
  QmpClient qmp;
  ASSERT_TRUE(qmp.Connect(sock, 60s)) << Slurp(serial);
  ASSERT_TRUE(qmp.Negotiate());

  // Both devices busy, past their first (full) buckets.
  auto deadline = Clock::now() + 180s;
  DeviceBytes b = Bytes(qmp);
  while ((b.disk < 3 * kDiskBps || b.net < 3 * kNetBps) && Clock::now() < deadline &&
         kite.running()) {
    std::this_thread::sleep_for(200ms);
    b = Bytes(qmp);
  }
  ASSERT_GE(b.disk, 3 * kDiskBps) << "the guest's disk reads did not start\n" << Slurp(serial);
  ASSERT_GE(b.net, 3 * kNetBps) << "the guest's download did not start (connected: "
                                << source.connected() << ")\n"
                                << Slurp(serial);

  // Eight seconds of both, with query-status round trips meanwhile.
  std::vector<double> status_ms;
  DeviceBytes b0 = Bytes(qmp);
  auto t0 = Clock::now();
  while (Clock::now() - t0 < 8s) {
    auto q0 = Clock::now();
    json r = qmp.Run(R"({"execute":"query-status"})");
    EXPECT_EQ(r["return"]["status"], "running") << r;
    status_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - q0).count());
    std::this_thread::sleep_for(50ms);
  }
  DeviceBytes b1 = Bytes(qmp);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  double disk = static_cast<double>(b1.disk - b0.disk) / seconds;
  double net = static_cast<double>(b1.net - b0.net) / seconds;
  std::sort(status_ms.begin(), status_ms.end());
  double p50 = status_ms[status_ms.size() / 2];
  double p99 = status_ms[std::min(status_ms.size() - 1, status_ms.size() * 99 / 100)];
  std::printf(
      "disk reads %.0f B/s (limit %llu: %+.2f %%), NIC received %.0f B/s (limit %llu: %+.2f %%); "
      "query-status p50 %.2f ms, p99 %.2f ms, worst %.2f ms over %zu calls\n",
      disk, static_cast<unsigned long long>(kDiskBps), 100.0 * (disk / kDiskBps - 1), net,
      static_cast<unsigned long long>(kNetBps), 100.0 * (net / kNetBps - 1), p50, p99,
      status_ms.back(), status_ms.size());
  EXPECT_NEAR(disk, kDiskBps, 0.05 * kDiskBps);
  EXPECT_NEAR(net, kNetBps, 0.05 * kNetBps);
  EXPECT_GT(b1.disk_throttled, b0.disk_throttled) << "the disk's limit held nothing back";
  EXPECT_GT(b1.net_throttled, b0.net_throttled) << "the NIC's limit held nothing back";
  EXPECT_LT(status_ms.back(), 1000.0) << "the control socket stalled behind the limits";

  qmp.Send(R"({"execute":"quit"})");
  const ProcessResult& r = kite.Join();
  EXPECT_TRUE(r.exited) << r.Describe();
  source.Stop();
}

}  // namespace
}  // namespace kite::testing
