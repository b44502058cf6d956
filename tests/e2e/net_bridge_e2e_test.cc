// Two Linux guests and the host on one bridge, in a network namespace the test makes
// (unshare -n -m; never the host's network): every one pings the others. VM A is a
// --transport pci machine with a multiqueue tap (queues=4): its guest enables the four pairs
// (ethtool -L's ioctl, /bin/set-channels: VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET) and, while the host
// sends it frames of many flows, sees them arrive on two receive queues or more (each queue's
// MSI-X interrupt in /proc/interrupts). VM B is a virtio-mmio machine with queues=2, enabled
// likewise. Both guests run kite.test=net-bridge (guest-firmware/linux/tests/net-bridge) with
// the control queue's receive filter on (Linux sets promiscuous off and its MAC table).
//
// Label e2e: needs a /dev/kvm where guest userspace runs (the nested VM), root (CAP_NET_ADMIN
// in the new namespace), unshare, ip, bash and busybox (its ping: the host may have no other);
// under CI=true a missing one is a failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/tool_required.h"

namespace kite::testing {
namespace {

// "key: value" lines of the script's output.
std::map<std::string, std::string> Fields(const std::string& out) {
  std::map<std::string, std::string> fields;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    size_t colon = line.find(": ");
    if (colon != std::string::npos) fields[line.substr(0, colon)] = line.substr(colon + 2);
  }
  return fields;
}

// A kite command line for one VM on kbr0 (bash words; $K, $KERNEL, $INITRD, $d set).
std::string VmCommand(const std::string& name, const std::string& args,
                      const std::string& cmdline) {
  return "$K run --kernel $KERNEL --initrd $INITRD --memory 256M " + args +
         " --cmdline 'console=ttyS0 reboot=k panic=1 quiet " + cmdline + "' --serial file:$d/" +
         name + ".txt >$d/" + name + ".out 2>$d/" + name + ".err &\n";
}

TEST(NetBridgeE2e, TwoVmsAndHost_PingEachOther_MultiqueueSpreadsFlows) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("unshare", "ip", "bash", "busybox");  // busybox ping: the host may have none
  KITE_REQUIRE_GUEST_USERSPACE();
  if (::geteuid() != 0) {
    if (RunningInCi()) FAIL() << "CI=true but not root: a bridge and taps need CAP_NET_ADMIN";
    GTEST_SKIP() << "skipped: not root";
  }
  std::string kernel = FindGuestKernel();
  KITE_REQUIRE_GUEST_KERNEL(kernel);
  std::string initrd = ScriptOutput({"/bin/bash", LinuxDir() + "/build-initramfs.sh"});
  ASSERT_FALSE(initrd.empty()) << "build-initramfs.sh failed";

  std::string script =
      "set -u\nmount -t sysfs sysfs /sys\nip link set lo up\n"
      "ip link add kbr0 type bridge\nip link set kbr0 up\n"
      "ip addr add 10.9.0.254/24 dev kbr0\n"
      "K=" KITE_BINARY "\nKERNEL=" +
      kernel + "\nINITRD=" + initrd + "\nd=$(mktemp -d)\n";
  script += VmCommand("a", "--transport pci --net tap,bridge=kbr0,queues=4,mac=52:54:00:09:00:01",
                      "ip=10.9.0.1::::a:eth0:off kite.test=net-bridge kite.queues=4 "
                      "kite.spread=1 kite.ping=10.9.0.2,10.9.0.254");
  script += "a=$!\n";
  script += VmCommand("b", "--net tap,bridge=kbr0,queues=2,mac=52:54:00:09:00:02",
                      "ip=10.9.0.2::::b:eth0:off kite.test=net-bridge kite.queues=2 "
                      "kite.ping=10.9.0.1,10.9.0.254");
  script += "b=$!\n";
  // The host pings both guests until they answer; meanwhile (until A has counted its queues)
  // it sends A frames of many flows: UDP to 32 ports (and pings). A multiqueue tap spreads
  // new flows over its attached queues by their hash, which covers the ports.
  script += R"SH(
host_ping() {
  for i in $(seq 1 240); do
    if busybox ping -c 1 -W 1 "$1" >/dev/null 2>&1; then echo ok; return; fi
    sleep 1
  done
  echo failed
}
echo "host_ping_a: $(host_ping 10.9.0.1)"
echo "host_ping_b: $(host_ping 10.9.0.2)"
for i in $(seq 1 180); do
  grep -q "rx queues with interrupts" $d/a.txt && break
  for p in $(seq 5000 5031); do echo x 2>/dev/null >/dev/udp/10.9.0.1/$p; done
  for p in $(seq 1 16); do busybox ping -c 1 -W 1 10.9.0.1 >/dev/null 2>&1 & done
  wait $(jobs -p | grep -v -e "^$a\$" -e "^$b\$") 2>/dev/null
  sleep 1
done
status=0; wait $a || status=$?; echo "kite_a: $status"
status=0; wait $b || status=$?; echo "kite_b: $status"
echo "taps_after: $(ip -o link show type tun | wc -l)"
sed 's/^/a: /' $d/a.txt; sed 's/^/b: /' $d/b.txt
sed 's/^/a-kite: /' $d/a.err; sed 's/^/b-kite: /' $d/b.err
)SH";
  ProcessOptions options;
  options.argv = {FindTool("unshare"), "-n", "-m", FindTool("bash"), "-c", script};
  options.timeout = std::chrono::milliseconds(600000);
  Result<ProcessResult> run = RunProcess(options);
  ASSERT_TRUE(run) << run.error().message();
  const std::string& out = run->out;
  auto f = Fields(out);
  auto has = [&](const std::string& line) { return out.find(line) != std::string::npos; };
  EXPECT_EQ(f["host_ping_a"], "ok") << run->Describe();
  EXPECT_EQ(f["host_ping_b"], "ok") << run->Describe();
  EXPECT_TRUE(has("a: kite-guest: eth0 channels combined 4 of 4")) << run->Describe();
  EXPECT_TRUE(has("b: kite-guest: eth0 channels combined 2 of 2")) << run->Describe();
  for (const char* line :
       {"a: kite-guest: ping 10.9.0.2 ok", "a: kite-guest: ping 10.9.0.254 ok",
        "b: kite-guest: ping 10.9.0.1 ok", "b: kite-guest: ping 10.9.0.254 ok"}) {
    EXPECT_TRUE(has(line)) << line << "\n" << run->Describe();
  }
  const std::string spread = "a: kite-guest: rx queues with interrupts: ";
  size_t at = out.find(spread);
  int queues_used = at == std::string::npos ? 0 : std::atoi(out.c_str() + at + spread.size());
  EXPECT_GE(queues_used, 2) << "frames of many flows arrive on several receive queues\n"
                            << run->Describe();
  EXPECT_EQ(f["kite_a"], "0") << run->Describe();
  EXPECT_EQ(f["kite_b"], "0") << run->Describe();
  EXPECT_EQ(f["taps_after"], "0") << run->Describe();
}

}  // namespace
}  // namespace kite::testing
