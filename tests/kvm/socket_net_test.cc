// Links between VMs over Unix sockets (--net dgram=LOCAL,remote=REMOTE and --net
// stream=PATH[,server=on]; docs/CLI.md "Network"): two kite processes, each running
// guest-firmware/programs/virtio_net_tx.c (paced broadcast frames until it reads 'q', counting
// the frames it receives), see each other's frames; the socket files are gone afterwards. A
// stream peer that sends a bad frame length is cut off while the VM goes on. No root needed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::testing {
namespace {

// Runs two VMs with the --net options given, lets them exchange frames for a second after both
// sent their first ten, stops them, and prints each one's output and the files left in `dir`.
Result<ProcessResult> RunPair(const std::string& dir, const std::string& net_a,
                              const std::string& net_b) {
  std::string script = R"SH(
set -e
K=)SH" KITE_BINARY R"SH(
G=)SH" KITE_GUEST_FIRMWARE_DIR R"SH(/virtio_net_tx.elf
cd "$1"
mkfifo in_a in_b
$K run --kernel $G --net "$2" --serial stdio --no-host-quirks <in_a >out_a 2>err_a &
a=$!
exec 3>in_a
for i in $(seq 1 600); do [ -S "$4" ] && break; sleep 0.05; done
$K run --kernel $G --net "$3" --serial stdio --no-host-quirks <in_b >out_b 2>err_b &
b=$!
exec 4>in_b
for i in $(seq 1 2400); do
  grep -q "frames sent" out_a && grep -q "frames sent" out_b && break
  sleep 0.05
done
sleep 1
printf q >&4; wait $b || echo "b_status: $?"
printf q >&3; wait $a || echo "a_status: $?"
sed 's/^/a: /' out_a err_a; sed 's/^/b: /' out_b err_b
echo "left: $(ls | grep -v -e '^in_' -e '^out_' -e '^err_' | tr '\n' ' ')"
)SH";
  ProcessOptions options;
  // $4: the socket the first VM makes, waited for before the second starts.
  std::string first_socket = net_a.substr(net_a.find('=') + 1);
  first_socket = first_socket.substr(0, first_socket.find(','));
  options.argv = {FindTool("bash"), "-c", script, "pair", dir, net_a, net_b, first_socket};
  options.timeout = std::chrono::milliseconds(240000);
  return RunProcess(options);
}

int Received(const std::string& out, const std::string& who) {
  std::smatch m;
  std::regex re(who + R"(: virtio_net_tx: stopped after \d+ frames \((\d+) received\))");
  return std::regex_search(out, m, re) ? std::stoi(m[1]) : -1;
}

void ExpectLinked(const Result<ProcessResult>& run) {
  ASSERT_TRUE(run) << run.error().message();
  const std::string& out = run->out;
  EXPECT_GE(Received(out, "a"), 10) << out << run->err;
  EXPECT_GE(Received(out, "b"), 10) << out << run->err;
  EXPECT_NE(out.find("a: virtio_net_tx: ok"), std::string::npos) << out;
  EXPECT_NE(out.find("b: virtio_net_tx: ok"), std::string::npos) << out;
  EXPECT_EQ(out.find("_status"), std::string::npos) << out;
  EXPECT_NE(out.find("left: \n"), std::string::npos) << "socket files left behind\n" << out;
}

TEST(SocketNet, Dgram_TwoVmsSeeEachOthersFrames) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("bash", "mkfifo");
  TempDir dir;
  ExpectLinked(
      RunPair(dir.path().string(), "dgram=a.sock,remote=b.sock", "dgram=b.sock,remote=a.sock"));
}

TEST(SocketNet, Stream_ServerAndClientSeeEachOthersFrames) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("bash", "mkfifo");
  TempDir dir;
  ExpectLinked(RunPair(dir.path().string(), "stream=link.sock,server=on", "stream=link.sock"));
}

// The test is the stream peer: a length beyond any frame ends its connection (logged); kite and
// the guest go on, and a peer that connects next gets the guest's frames.
TEST(SocketNet, Stream_BadFrameLength_PeerCutOffVmGoesOn) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  std::string path = dir.File("s.sock");
  ProcessOptions options;
  options.argv = {KITE_BINARY,       "run",
                  "--kernel",        std::string(KITE_GUEST_FIRMWARE_DIR) + "/virtio_net_tx.elf",
                  "--net",           "stream=" + path + ",server=on",
                  "--serial",        "stdio",
                  "--no-host-quirks"};
  options.timeout = std::chrono::milliseconds(120000);
  std::atomic<int> pid{0};
  options.on_spawn = [&](int p) { pid = p; };
  Result<ProcessResult> run = Err("not run");
  std::thread vm([&] { run = RunProcess(options); });

  auto connect_peer = [&]() -> int {
    for (int i = 0; i < 600; ++i) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
      ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  };
  int bad = connect_peer();
  ASSERT_GE(bad, 0);
  const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
  ASSERT_EQ(::send(bad, huge, 4, MSG_NOSIGNAL), 4);
  // kite closes it: a read sees the end (frames sent before may come first).
  char sink[4096];
  ssize_t n;
  while ((n = ::recv(bad, sink, sizeof(sink), 0)) > 0) {
  }
  EXPECT_EQ(n, 0) << "kite did not close the connection of a peer sending a bad length";
  ::close(bad);

  int good = connect_peer();
  ASSERT_GE(good, 0);
  uint8_t header[4];
  ASSERT_EQ(::recv(good, header, 4, MSG_WAITALL), 4) << "no frame reached the next peer";
  uint32_t len =
      uint32_t{header[0]} << 24 | uint32_t{header[1]} << 16 | uint32_t{header[2]} << 8 | header[3];
  EXPECT_EQ(len, 60u) << "virtio_net_tx sends 60-byte frames";
  std::vector<uint8_t> frame(len);
  ASSERT_EQ(::recv(good, frame.data(), len, MSG_WAITALL), static_cast<ssize_t>(len));
  EXPECT_EQ(frame[0], 0xff) << "a broadcast frame";
  ::close(good);
  if (pid > 0) ::kill(pid, SIGTERM);
  vm.join();
  ASSERT_TRUE(run) << run.error().message();
  EXPECT_NE(run->err.find("the peer sent a frame length of 4294967295"), std::string::npos)
      << run->Describe();
}

}  // namespace
}  // namespace kite::testing
