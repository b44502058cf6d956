// Two Linux guests on a link of their own (--net dgram= and --net stream=; docs/CLI.md
// "Network"), as a user would build an isolated network between VMs without root: each guest
// (kite's initramfs, kite.test=ping-peer) has a static address on the link and pings the other
// until it answers, then stays up for the other's pings. Nothing reaches the host's network:
// the only interface each guest has is the link. Both NICs have mtu=9000 (VIRTIO_NET_F_MTU):
// the guests start with that MTU and their pings fill it.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

class SocketNetE2e : public ::testing::TestWithParam<bool> {};  // true: stream, false: dgram

std::vector<std::string> KiteArgs(const std::string& kernel, const std::string& initrd,
                                  const std::string& net, const std::string& self,
                                  const std::string& peer, const std::string& serial) {
  return {KITE_BINARY,
          "run",
          "--kernel",
          kernel,
          "--initrd",
          initrd,
          "--memory",
          "256M",
          "--cmdline",
          "console=ttyS0 reboot=k panic=1 quiet ip=" + self + "::::vm:eth0:off " +
              "kite.test=ping-peer kite.ping=" + peer,
          "--net",
          net,
          "--serial",
          "file:" + serial};
}

TEST_P(SocketNetE2e, TwoLinuxGuests_PingEachOther) {
  KITE_REQUIRE_GUEST_USERSPACE();
  GuestImages images;
  ASSERT_NO_FATAL_FAILURE(FindGuestImages(&images));
  const std::string &kernel = images.kernel, &initrd = images.initrd;
  TempDir dir;
  const bool stream = GetParam();
  std::string a_net = stream ? "stream=" + dir.File("link.sock") + ",server=on"
                             : "dgram=" + dir.File("a.sock") + ",remote=" + dir.File("b.sock");
  std::string b_net = stream ? "stream=" + dir.File("link.sock")
                             : "dgram=" + dir.File("b.sock") + ",remote=" + dir.File("a.sock");
  a_net += ",mtu=9000";
  b_net += ",mtu=9000";
  std::string a_serial = dir.File("a.txt"), b_serial = dir.File("b.txt");
  KiteInBackground a(KiteArgs(kernel, initrd, a_net, "10.7.0.1", "10.7.0.2", a_serial));
  // The stream client connects at start: the listener must be up first.
  for (int i = 0; i < 600 && stream && !std::filesystem::exists(dir.File("link.sock")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  KiteInBackground b(KiteArgs(kernel, initrd, b_net, "10.7.0.2", "10.7.0.1", b_serial));
  const ProcessResult& rb = b.Join();
  const ProcessResult& ra = a.Join();
  std::string a_out = Slurp(a_serial), b_out = Slurp(b_serial);
  for (const std::string* out : {&a_out, &b_out}) {
    EXPECT_NE(out->find("kite-guest: eth0 mtu 9000"), std::string::npos) << *out;
  }
  EXPECT_NE(a_out.find("kite-guest: peer 10.7.0.2 answered pings of size 8972"), std::string::npos)
      << a_out << ra.Describe();
  EXPECT_NE(b_out.find("kite-guest: peer 10.7.0.1 answered pings of size 8972"), std::string::npos)
      << b_out << rb.Describe();
  EXPECT_EQ(ra.exit_status, 0) << ra.Describe();
  EXPECT_EQ(rb.exit_status, 0) << rb.Describe();
}

INSTANTIATE_TEST_SUITE_P(DgramAndStream, SocketNetE2e, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Stream" : "Dgram"; });

}  // namespace
}  // namespace kite::testing
