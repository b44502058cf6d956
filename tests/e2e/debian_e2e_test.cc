// A real distribution, the master-image workflow of the QEMU/libvirt articles (docs/TUTORIAL.md):
// the Debian 12 master that examples/debian-master.sh builds (Debian's own kernel and
// initramfs-tools initramfs, systemd, DHCP by systemd-networkd), booted from a disposable qcow2
// overlay with nothing on the kernel command line but console=ttyS0 and root=. The test logs in
// at the serial getty as a user would, checks systemd, the root file system on virtio-blk and the
// DHCP lease through --net user, changes a file, powers off; `kite-img convert` makes a new
// master of the overlay, and a VM from an overlay on the new master sees the change. The master
// itself is never written.
//
// The master comes from KITE_DEBIAN_MASTER (a directory with debian-12-master.qcow2, vmlinuz,
// initrd.img); scripts/test.sh builds it before the KVM tests. Without it the test is skipped,
// and fails under CI=true.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "linux_guest.h"
#include "serial_session.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using namespace std::chrono_literals;

constexpr char kPassword[] = "kite";  // examples/debian-master.sh's default
constexpr char kPrompt[] = "root@debian-kite:~# ";

// Runs kite-img; the test fails with its output when it does.
void KiteImg(const std::vector<std::string>& args) {
  ProcessOptions o;
  o.argv = {KITE_IMG_BINARY};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.timeout = 300s;
  Result<ProcessResult> r = RunProcess(o);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->exit_status, 0) << r->Describe();
}

class DebianE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    KITE_REQUIRE_GUEST_USERSPACE();
    const char* dir = std::getenv("KITE_DEBIAN_MASTER");
    master_dir_ = dir ? dir : "";
    if (master_dir_.empty() || !std::filesystem::exists(master_dir_ + "/debian-12-master.qcow2")) {
      std::string why = "no Debian master in KITE_DEBIAN_MASTER='" + master_dir_ +
                        "' (build one with sudo examples/debian-master.sh -o DIR)";
      if (RunningInCi()) FAIL() << "CI=true: " << why;
      GTEST_SKIP() << why;
    }
  }

  // Boots an overlay on `image` and logs in at the serial getty; the session is at a root
  // shell prompt when this returns without a test failure.
  void BootAndLogIn(SerialSession& vm) {
    ASSERT_TRUE(vm.Expect("debian-kite login: ", 900s)) << vm.Transcript();
    vm.Send("root\r");
    ASSERT_TRUE(vm.Expect("Password: ", 60s)) << vm.Transcript();
    vm.Send(std::string(kPassword) + "\r");
    ASSERT_TRUE(vm.Expect(kPrompt, 120s)) << vm.Transcript();
  }

  // Types a command and waits for the next prompt; returns what the console printed between,
  // without the terminal's escape sequences (bash turns bracketed paste on and off around
  // every command: ESC [?2004l and a \r before the output) and carriage returns.
  std::string Run(SerialSession& vm, const std::string& command, std::chrono::seconds timeout) {
    size_t from = vm.Transcript().size();
    vm.Send(command + "\r");
    EXPECT_TRUE(vm.Expect(kPrompt, timeout)) << command << "\n" << vm.Transcript();
    std::string out;
    const std::string raw = vm.Transcript().substr(from);
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\x1b' && i + 1 < raw.size() && raw[i + 1] == '[') {
        i += 2;  // a CSI sequence: parameters, then one final byte in @..~
        while (i < raw.size() && !(raw[i] >= '@' && raw[i] <= '~')) ++i;
        continue;
      }
      if (raw[i] != '\r') out += raw[i];  // the terminal's line ends are \r\n, or \r alone
    }
    return out;
  }

  std::vector<std::string> KiteRun(const std::string& disk,
                                   const std::vector<std::string>& more = {}) const {
    std::vector<std::string> argv = {KITE_BINARY, "run",
                                     "--kernel",  master_dir_ + "/vmlinuz",
                                     "--initrd",  master_dir_ + "/initrd.img",
                                     "--cmdline", "console=ttyS0 root=/dev/vda",
                                     "--memory",  "768M",
                                     "--disk",    "path=" + disk + ",format=qcow2",
                                     "--net",     "user",
                                     "--serial",  "stdio"};
    argv.insert(argv.end(), more.begin(), more.end());
    return argv;
  }

  void PowerOff(SerialSession& vm) {
    vm.Send("systemctl poweroff\r");
    EXPECT_TRUE(vm.WaitExit(300s)) << vm.Transcript();
    EXPECT_EQ(vm.exit_status(), 0) << vm.Transcript();
  }

  std::string master_dir_;
  TempDir dir_;
};

TEST_F(DebianE2e, OverlayBoot_ChangeCommittedToNewMaster_SeenByNextVm) {
  const std::string master = master_dir_ + "/debian-12-master.qcow2";
  struct stat before {};
  ASSERT_EQ(::stat(master.c_str(), &before), 0);

  // 1. A disposable overlay on the master; a login; what a user checks first.
  const std::string vm1 = dir_.File("vm1.qcow2");
  KiteImg({"create", "-f", "qcow2", "-b", master, "-F", "qcow2", vm1});
  {
    SerialSession vm(KiteRun(vm1));
    BootAndLogIn(vm);
    if (HasFailure()) return;
    // systemd is PID 1 and came all the way up; the root is the virtio disk; DHCP through
    // kite's NAT gave the address libslirp hands out.
    std::string state = Run(vm, "systemctl is-system-running --wait", 300s);
    EXPECT_NE(state.find("\nrunning"), std::string::npos) << state;
    std::string init = Run(vm, "cat /proc/1/comm; findmnt -n -o SOURCE,FSTYPE /", 60s);
    EXPECT_NE(init.find("systemd"), std::string::npos) << init;
    EXPECT_NE(init.find("/dev/vda ext4"), std::string::npos) << init;
    std::string addr = Run(vm, "ip -4 -o addr show scope global", 60s);
    EXPECT_NE(addr.find("inet 10.0.2.15/24"), std::string::npos) << addr;
    // A resolver: systemd-resolved's stub, asking the DNS server the lease named (libslirp's
    // proxy). No name is looked up: the nested VM the tests run in has no network to ask.
    std::string dns = Run(vm, "grep ^nameserver /etc/resolv.conf; resolvectl dns", 60s);
    EXPECT_NE(dns.find("nameserver 127.0.0.53"), std::string::npos) << dns;
    EXPECT_NE(dns.find("10.0.2.3"), std::string::npos) << dns;
    std::string kernel =
        Run(vm, "uname -r; dpkg-query -W -f '${Version}\\n' linux-image-amd64", 60s);
    EXPECT_NE(kernel.find("-amd64"), std::string::npos) << kernel;
    // The change the next master must carry.
    Run(vm, "echo made-in-vm1-$((6 * 7)) > /etc/kite-marker && sync", 60s);
    PowerOff(vm);
  }
  struct stat after {};
  ASSERT_EQ(::stat(master.c_str(), &after), 0);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec) << "the master was written";
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec) << "the master was written";

  // 2. A new master from the overlay (flattened: the old master is not needed by it).
  const std::string new_master = dir_.File("debian-12-master-v2.qcow2");
  KiteImg({"convert", "-O", "qcow2", vm1, new_master});
  KiteImg({"check", new_master});

  // 3. A VM from an overlay on the new master sees the change.
  const std::string vm2 = dir_.File("vm2.qcow2");
  KiteImg({"create", "-f", "qcow2", "-b", new_master, "-F", "qcow2", vm2});
  {
    SerialSession vm(KiteRun(vm2));
    BootAndLogIn(vm);
    if (HasFailure()) return;
    std::string marker = Run(vm, "cat /etc/kite-marker", 60s);
    EXPECT_NE(marker.find("made-in-vm1-42"), std::string::npos) << marker;
    PowerOff(vm);
  }
}

// Debian's own kernel finds a hot-added disk and NIC on a PCI machine with nothing run inside it
// (ACPI PCI hotplug through the GED, docs/PCI.md), and lets go of them by itself on device_del;
// system_powerdown is the ACPI power button, which systemd-logind turns into a clean power off.
TEST_F(DebianE2e, DebianKernel_HotplugDiskAndNic_PowerButton) {
  const std::string vm = dir_.File("vm.qcow2"), data = dir_.File("data.raw");
  const std::string sock = dir_.File("qmp.sock");
  KiteImg(
      {"create", "-f", "qcow2", "-b", master_dir_ + "/debian-12-master.qcow2", "-F", "qcow2", vm});
  KiteImg({"create", "-f", "raw", data, "64M"});
  SerialSession guest(KiteRun(vm, {"--transport", "pci", "--api-sock", sock}));
  BootAndLogIn(guest);
  if (HasFailure()) return;
  QmpClient qmp;
  ASSERT_TRUE(qmp.Connect(sock, 30s));
  ASSERT_TRUE(qmp.Negotiate());
  const nlohmann::json ok = {{"return", nlohmann::json::object()}};

  // A disk: the guest's udev makes /dev/vdb on its own; the guest writes it.
  ASSERT_EQ(qmp.Run(R"({"execute":"device_add","arguments":{"driver":"virtio-blk-pci",)"
                    R"("id":"disk1","path":")" +
                    data + R"(","format":"raw"}})"),
            ok);
  std::string found = Run(guest,
                          "for i in $(seq 60); do [ -b /dev/vdb ] && break; sleep 1; done; "
                          "echo vdb-sectors=$(cat /sys/block/vdb/size)",
                          120s);
  EXPECT_NE(found.find("vdb-sectors=131072"), std::string::npos) << found;
  Run(guest, "echo hello-from-debian > /dev/vdb && sync", 60s);
  ASSERT_EQ(qmp.Run(R"({"execute":"device_del","arguments":{"id":"disk1"}})"), ok);
  nlohmann::json deleted = qmp.WaitEvent("DEVICE_DELETED", 60s);
  ASSERT_FALSE(deleted.is_null()) << guest.Transcript();
  EXPECT_EQ(deleted["data"]["device"], "disk1");
  std::string gone = Run(guest, "[ -e /dev/vdb ] || echo vdb-gone-$((40 + 2))", 60s);
  EXPECT_NE(gone.find("vdb-gone-42"), std::string::npos) << gone;
  EXPECT_EQ(ReadFile(data).substr(0, 18), "hello-from-debian\n");

  // A NIC: systemd-networkd takes a DHCP lease on it by itself.
  ASSERT_EQ(qmp.Run(R"({"execute":"device_add","arguments":{"driver":"virtio-net-pci",)"
                    R"("id":"nic1","backend":"user","mac":"52:54:00:12:34:99"}})"),
            ok);
  std::string leased = Run(guest,
                           "for i in $(seq 90); do [ $(ip -4 -o addr show scope global | "
                           "wc -l) -ge 2 ] && break; sleep 1; done; ip -o link | grep -c "
                           "52:54:00:12:34:99 | sed s/^/nic-links=/; echo addrs=$(ip -4 -o addr "
                           "show scope global | grep -c 'inet 10[.]0[.]2[.]15/')",
                           150s);
  EXPECT_NE(leased.find("nic-links=1"), std::string::npos) << leased;
  EXPECT_NE(leased.find("addrs=2"), std::string::npos) << leased;
  ASSERT_EQ(qmp.Run(R"({"execute":"device_del","arguments":{"id":"nic1"}})"), ok);
  deleted = qmp.WaitEvent("DEVICE_DELETED", 60s);
  ASSERT_FALSE(deleted.is_null()) << guest.Transcript();
  EXPECT_EQ(deleted["data"]["device"], "nic1");
  std::string unlinked =
      Run(guest, "ip -o link | grep -c 52:54:00:12:34:99 | sed s/^/nic-links=/", 60s);
  EXPECT_NE(unlinked.find("nic-links=0"), std::string::npos) << unlinked;

  // The power button: a clean shutdown, kite exits 0.
  ASSERT_EQ(qmp.Run(R"({"execute":"system_powerdown"})"), ok);
  EXPECT_TRUE(guest.WaitExit(300s)) << guest.Transcript();
  EXPECT_EQ(guest.exit_status(), 0) << guest.Transcript();
  EXPECT_NE(guest.Transcript().find("reboot: Power down"), std::string::npos) << guest.Transcript();
}

}  // namespace
}  // namespace kite::testing
