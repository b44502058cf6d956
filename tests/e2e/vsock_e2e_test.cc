// virtio-vsock end to end (docs/VSOCK.md): kite's Linux guest (kite.test=vsock, the static
// vsock-test program of the initramfs) and host programs on the Unix sockets of
// --vsock cid=3,uds=PATH:
//   * guest -> host: the guest connects to (CID 2, port 6000) and sends 8 MiB; the host,
//     listening on PATH_6000, checksums what arrives and answers with it; the guest's checksum
//     of what it sent must be the same;
//   * F8: the host's PATH_6001 takes 256 KiB and closes: the guest's send fails (reset), it
//     does not hang, and kite carries on;
//   * host -> guest: the host connects to PATH, "CONNECT 5000\n", waits for "OK <port>\n" and
//     sends 8 MiB; the guest answers with its checksum of what it received.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

constexpr uint64_t kBytes = 8u << 20;
constexpr uint64_t kFnvStart = 0xcbf29ce484222325ull;

uint64_t Fnv(uint64_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

sockaddr_un Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

UniqueFd Listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr = Address(path);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(fd.get(), 4), 0);
  return fd;
}

// Waits up to `seconds` for `fd` to be readable.
bool WaitReadable(int fd, int seconds) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, seconds * 1000) == 1;
}

struct Sink {
  uint64_t bytes = 0;
  uint64_t fnv = kFnvStart;
  bool accepted = false;
};

// Accepts one connection on `listener` (within 5 minutes: the guest boots first), reads until
// EOF or `close_after` bytes, and (when reading to EOF) answers "N HEX\n".
void ServeOne(int listener, Sink* out, uint64_t close_after) {
  if (!WaitReadable(listener, 300)) return;
  UniqueFd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return;
  out->accepted = true;
  std::vector<uint8_t> buf(65536);
  while (out->bytes < close_after) {
    ssize_t n = ::recv(conn.get(), buf.data(), buf.size(), 0);
    if (n <= 0) break;
    out->fnv = Fnv(out->fnv, buf.data(), static_cast<size_t>(n));
    out->bytes += static_cast<uint64_t>(n);
  }
  if (out->bytes >= close_after) return;  // closed mid-stream (F8)
  std::string line = std::to_string(out->bytes) + " " + Hex(out->fnv) + "\n";
  (void)!::send(conn.get(), line.data(), line.size(), MSG_NOSIGNAL);
}

// Connects to the guest's port `port` through `path` (retrying while the guest does not
// listen yet: kite closes the socket on its RST), sends `data`, reads the guest's answer.
std::string SendToGuest(const std::string& path, uint32_t port, const std::vector<uint8_t>& data,
                        std::string* ok_line) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (std::chrono::steady_clock::now() < deadline) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr = Address(path);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    std::string hello = "CONNECT " + std::to_string(port) + "\n";
    (void)!::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL);
    std::string line;
    char c;
    while (line.size() < 32 && ::recv(fd.get(), &c, 1, 0) == 1 && (line += c).back() != '\n') {
    }
    if (line.rfind("OK ", 0) != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    *ok_line = line;
    for (size_t off = 0; off < data.size();) {
      ssize_t n = ::send(fd.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return "send failed: " + std::string(std::strerror(errno));
      off += static_cast<size_t>(n);
    }
    ::shutdown(fd.get(), SHUT_WR);
    std::string answer;
    char buf[128];
    ssize_t n;
    while (WaitReadable(fd.get(), 60) && (n = ::recv(fd.get(), buf, sizeof(buf), 0)) > 0) {
      answer.append(buf, static_cast<size_t>(n));
    }
    return answer;
  }
  return "the guest never accepted";
}

TEST(VsockE2e, BothWays_8MiB_ChecksumsMatch_HostResetSeenByGuest) {
  KITE_REQUIRE_GUEST_USERSPACE();
  GuestImages images;
  ASSERT_NO_FATAL_FAILURE(FindGuestImages(&images));
  const std::string &kernel = images.kernel, &initrd = images.initrd;
  TempDir dir;
  std::string uds = dir.File("v.sock"), serial = dir.File("serial.txt");
  UniqueFd to_host = Listen(uds + "_6000"), resetting = Listen(uds + "_6001");
  Sink got, reset;
  std::thread serve([&] {
    ServeOne(to_host.get(), &got, UINT64_MAX);
    ServeOne(resetting.get(), &reset, 256 * 1024);
  });
  KiteInBackground kite({KITE_BINARY, "run", "--kernel", kernel, "--initrd", initrd, "--memory",
                         "256M", "--cmdline",
                         "console=ttyS0 reboot=k panic=1 quiet kite.test=vsock", "--vsock",
                         "cid=3,uds=" + uds, "--serial", "file:" + serial});
  std::vector<uint8_t> data(kBytes);
  std::mt19937_64 rng(42);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  std::string ok_line;
  std::string answer = SendToGuest(uds, 5000, data, &ok_line);
  serve.join();
  const ProcessResult& r = kite.Join();
  std::string out = Slurp(serial);
  // Guest -> host.
  EXPECT_EQ(got.bytes, kBytes) << out;
  EXPECT_NE(out.find("vsock-test: sent " + std::to_string(kBytes) + " fnv " + Hex(got.fnv)),
            std::string::npos)
      << out;
  EXPECT_NE(
      out.find("vsock-test: host replied '" + std::to_string(kBytes) + " " + Hex(got.fnv) + "'"),
      std::string::npos)
      << out;
  // F8: the guest's send failed with a reset or a broken pipe, and it went on.
  EXPECT_TRUE(reset.accepted);
  EXPECT_TRUE(std::regex_search(out, std::regex("vsock-test: send failed: (Connection reset by "
                                                "peer|Broken pipe|Transport endpoint)")))
      << out;
  EXPECT_NE(out.find("kite-guest: vsock reset test exited with status 1"), std::string::npos)
      << out;
  // Host -> guest.
  EXPECT_TRUE(std::regex_match(ok_line, std::regex("OK [0-9]+\n"))) << ok_line;
  uint64_t fnv = Fnv(kFnvStart, data.data(), data.size());
  EXPECT_EQ(answer, std::to_string(kBytes) + " " + Hex(fnv) + "\n") << out;
  EXPECT_NE(out.find("kite-guest: test vsock exited with status 0"), std::string::npos) << out;
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
}

}  // namespace
}  // namespace kite::testing
