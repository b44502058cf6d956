// End-to-end virtio tests: the Linux guest kernel (guest-firmware/linux) under `kite run`, with
// the kernel itself as the virtio client, because userspace cannot run on emulated-KVM hosts
// (MACHINE.md):
//   - virtio-blk: root on ext4 from /dev/vda, a qcow2 overlay over a raw base, found through
//     ACPI (LNRO0005) and through virtio_mmio.device= (--no-acpi). A read-write mount writes
//     the superblock (mount count, last mount time), which the host then reads back. A
//     readonly=on disk makes the kernel fall back to a read-only mount; nothing changes on it.
//     A qcow2 image with an external raw data file (data_file=) mounts read-write too.
//   - virtio-net: ip=dhcp through the user-mode NAT, and netconsole= kernel log lines that reach
//     a UDP socket on the host through the NAT (10.0.2.2 → 127.0.0.1) and through a tap.
// Where /dev/kvm is hardware-backed, the ACPI disk boot also runs a busybox /init that writes
// /hello, syncs and powers off; the host reads the file back. Every boot ends by itself: no
// init (or no root) makes the kernel panic, panic=1 resets, and kite exits 2 (--on-reboot exit).
// The kernel is found as in linux_boot_test.cc; images come from make-rootfs.sh and kite-img.
// KITE_E2E_LOG_DIR=DIR keeps every boot's console output and the netconsole text in DIR.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "linux_guest.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kBootTimeout{5 * 60 * 1000};
constexpr milliseconds kToolTimeout{120 * 1000};
// As in linux_boot_test.cc, but panic=1: a panic resets the guest after one second, so kite
// exits by itself and closes its images cleanly.
constexpr char kCmdline[] =
    "console=ttyS0 reboot=k panic=1 lpj=5000000 tsc=reliable no_timer_check "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd noxsave "
    "clearcpuid=smap,smep,popcnt,rdrand,rdseed,fsgsbase,clflushopt,clwb,rdpid,bmi1,bmi2,adx,"
    "movbe,abm,pku,umip";
constexpr char kRootCmdline[] = " root=/dev/vda rw rootfstype=ext4";
constexpr char kExt4Mounted[] = "EXT4-fs (vda): mounted filesystem";
constexpr char kRootReadWrite[] = "VFS: Mounted root (ext4 filesystem) on device";
constexpr char kRootReadOnly[] = "VFS: Mounted root (ext4 filesystem) readonly on device";
constexpr char kNoInit[] = "No working init found";
constexpr char kUserspaceMarker[] = "kite-e2e: wrote /hello";
constexpr char kHelloText[] = "kite-e2e: hello from the guest\n";  // make-rootfs.sh's /init
constexpr int kExitReset = 2;

bool Contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// Runs a shell command line (paths here never hold spaces) with the sbin directories on PATH.
ProcessResult Shell(const std::string& command) {
  ProcessOptions o;
  o.argv = {"/bin/sh", "-c", "PATH=\"$PATH:/usr/sbin:/sbin\"; " + command};
  o.timeout = kToolTimeout;
  Result<ProcessResult> r = RunProcess(o);
  EXPECT_TRUE(r.has_value()) << command << ": " << (r ? "" : r.error().message());
  return r ? *r : ProcessResult{};
}

bool ShellOk(const std::string& command) {
  ProcessResult r = Shell(command);
  EXPECT_TRUE(r.exited && r.exit_status == 0) << command << "\n" << r.Describe();
  return r.exited && r.exit_status == 0;
}

// The superblock fields a mount updates, from `dumpe2fs -h`.
struct Superblock {
  int mount_count = -1;
  std::string last_mount_time;  // "n/a" before the first mount
};

Superblock ReadSuperblock(const std::string& image) {
  ProcessResult r = Shell("dumpe2fs -h " + image + " 2>/dev/null");
  Superblock sb;
  std::smatch m;
  if (std::regex_search(r.out, m, std::regex(R"(Mount count:\s+(\d+))"))) {
    sb.mount_count = std::stoi(m[1]);
  }
  if (std::regex_search(r.out, m, std::regex(R"(Last mount time:\s+([^\n]*))"))) {
    sb.last_mount_time = m[1];
  }
  return sb;
}

// A UDP socket on the host that collects every datagram (netconsole sends one per log line).
class UdpListener {
 public:
  ~UdpListener() { Stop(); }

  // Binds to ip:<a free port> and starts collecting on a thread.
  bool Start(const char* ip) {
    fd_ = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    socklen_t len = sizeof(addr);
    if (!fd_ || ::inet_pton(AF_INET, ip, &addr.sin_addr) != 1 ||
        ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return false;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Collect(); });
    return true;
  }
  uint16_t port() const { return port_; }

  // Keeps collecting for `grace` (datagrams still on their way), then returns them all.
  std::string Stop(milliseconds grace = milliseconds(0)) {
    if (thread_.joinable()) {
      std::this_thread::sleep_for(grace);
      stop_ = true;
      thread_.join();
    }
    std::lock_guard lock(mu_);
    return text_;
  }

 private:
  void Collect() {
    while (!stop_) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      std::lock_guard lock(mu_);
      if (n > 0) text_.append(buf, static_cast<size_t>(n));
    }
  }

  UniqueFd fd_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string text_;
};

// A persistent tap device with the host end 192.168.222.1/24, deleted at scope end.
class TapDevice {
 public:
  explicit TapDevice(std::string name) : name_(std::move(name)) {}
  ~TapDevice() {
    if (created_) Shell("ip link del " + name_);
  }
  bool Create() {
    if (!std::filesystem::exists("/dev/net/tun")) Shell("modprobe tun");
    created_ = ShellOk("ip tuntap add dev " + name_ + " mode tap");
    return created_ && ShellOk("ip addr add 192.168.222.1/24 dev " + name_) &&
           ShellOk("ip link set " + name_ + " up");
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool created_ = false;
};

class VirtioE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KITE_REQUIRE_KVM();
    kernel_ = FindKernel();
    KITE_REQUIRE_GUEST_KERNEL(kernel_);
  }

  // Boots the kernel without an initrd until kite exits (or the timeout passes).
  ProcessResult Boot(const std::string& cmdline_extra, std::vector<std::string> extra) {
    ProcessOptions o;
    o.argv = {KITE_BINARY, "run",  "--kernel",    kernel_, "--cmdline", kCmdline + cmdline_extra,
              "--memory",  "128M", "--on-reboot", "exit"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.timeout = kBootTimeout;
    Result<ProcessResult> r = RunProcess(o);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
    if (r) SaveLog(r->Describe());
    return r ? *r : ProcessResult{};
  }

  // With $KITE_E2E_LOG_DIR set, keeps each boot's console and kite's stderr there, one file per
  // test (appended: several boots or the netconsole text may go into one file).
  void SaveLog(const std::string& text) {
    const char* dir = std::getenv("KITE_E2E_LOG_DIR");
    if (dir == nullptr) return;
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::ofstream(std::string(dir) + "/" + info->name() + ".log", std::ios::app) << text << "\n";
  }

  // A raw ext4 image (make-rootfs.sh) in the test's directory; "" on failure.
  std::string MakeRootfs(const std::string& name, bool userspace) {
    std::string path = dir_.File(name);
    std::string script = std::string(KITE_SOURCE_DIR) + "/tests/e2e/make-rootfs.sh";
    if (!ShellOk("/bin/bash " + script + " " + path + " 16" + (userspace ? " userspace" : ""))) {
      return "";
    }
    return path;
  }

  // Boots root=/dev/vda rw from a qcow2 overlay over a raw base, then checks the images.
  void OverlayRootMountedReadWrite(bool acpi);
  void ExpectMountRecorded(const std::string& overlay, const Superblock& sb_before, bool userspace);

  std::string kernel_;
  TempDir dir_;
};

void VirtioE2eTest::OverlayRootMountedReadWrite(bool acpi) {
  // Userspace only where it runs, and only with ACPI (poweroff -f needs ACPI S5).
  bool userspace = acpi && HardwareBackedKvm();
  std::string base = MakeRootfs("base.raw", userspace);
  ASSERT_FALSE(base.empty());
  const std::string base_before = ReadFile(base);
  Superblock sb_before = ReadSuperblock(base);
  ASSERT_EQ(sb_before.mount_count, 0);
  std::string overlay = dir_.File("overlay.qcow2");
  ASSERT_TRUE(
      ShellOk(std::string(KITE_IMG_BINARY) + " create -f qcow2 -b base.raw -F raw " + overlay));

  std::vector<std::string> args = {"--disk", "path=" + overlay + ",format=qcow2"};
  if (!acpi) args.push_back("--no-acpi");
  ProcessResult r = Boot(std::string(kRootCmdline) + (userspace ? " init=/init" : ""), args);
  ASSERT_TRUE(r.exited) << "kite did not exit by itself\n" << r.Describe();
  // The mmio devices reach the kernel through the DSDT, or through its command line.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("Kernel command line: [^\n]*"))) << r.out;
  EXPECT_EQ(Contains(m[0], "virtio_mmio.device=4K@0xd0000000:5"), !acpi) << m[0];
  EXPECT_EQ(Contains(r.out, "ACPI: RSDP"), acpi) << r.Describe();
  EXPECT_TRUE(Contains(r.out, kExt4Mounted)) << r.Describe();
  EXPECT_TRUE(Contains(r.out, kRootReadWrite)) << r.Describe();
  if (userspace) {
    EXPECT_TRUE(Contains(r.out, kUserspaceMarker)) << r.Describe();
    EXPECT_EQ(r.exit_status, 0) << "poweroff: " << r.Describe();
  } else {
    EXPECT_TRUE(Contains(r.out, kNoInit)) << r.Describe();
    EXPECT_EQ(r.exit_status, kExitReset) << "panic=1 resets: " << r.Describe();
  }

  ExpectMountRecorded(overlay, sb_before, userspace);
  EXPECT_TRUE(ReadFile(base) == base_before) << "the guest's writes reached the backing file";
}

// The overlay is consistent, and its flattened contents show the guest's mount (and /hello).
void VirtioE2eTest::ExpectMountRecorded(const std::string& overlay, const Superblock& sb_before,
                                        bool userspace) {
  ProcessResult check = Shell("qemu-img check -f qcow2 " + overlay);
  EXPECT_EQ(check.exit_status, 0) << check.Describe();
  std::string flat = dir_.File("flat.raw");
  ASSERT_TRUE(
      ShellOk(std::string(KITE_IMG_BINARY) + " convert -f qcow2 -O raw " + overlay + " " + flat));
  Superblock sb_after = ReadSuperblock(flat);
  EXPECT_EQ(sb_after.mount_count, sb_before.mount_count + 1);
  EXPECT_NE(sb_after.last_mount_time, sb_before.last_mount_time);
  EXPECT_NE(sb_after.last_mount_time, "");
  if (userspace) {
    ProcessResult cat = Shell("debugfs -R 'cat /hello' " + flat + " 2>/dev/null");
    EXPECT_EQ(cat.out, kHelloText) << cat.Describe();
  }
}

TEST_F(VirtioE2eTest, Acpi_Qcow2OverlayRoot_MountedReadWrite_SuperblockWritten_BaseUnchanged) {
  OverlayRootMountedReadWrite(/*acpi=*/true);
}

TEST_F(VirtioE2eTest, NoAcpi_CmdlineDevices_Qcow2OverlayRoot_MountedReadWrite) {
  OverlayRootMountedReadWrite(/*acpi=*/false);
}

// A qcow2 image that keeps its data in an external raw data file (kite-img convert -o
// data_file=..,data_file_raw=on): without data_file= kite refuses the disk (the image's own
// name for it is never followed, BAD_INPUTS I7); with it the guest mounts root read-write
// (and, with userspace, writes /hello). Then the raw data file alone is the disk, the qcow2 file
// holds only metadata, and qemu-img check is clean.
TEST_F(VirtioE2eTest, Qcow2ExternalDataFile_RootMountedReadWrite_DataFileIsTheDisk) {
  bool userspace = HardwareBackedKvm();
  std::string base = MakeRootfs("base.raw", userspace);
  ASSERT_FALSE(base.empty());
  Superblock sb_before = ReadSuperblock(base);
  std::string image = dir_.File("ext.qcow2"), data = dir_.File("ext.data");
  ASSERT_TRUE(ShellOk(std::string(KITE_IMG_BINARY) + " convert -f raw -O qcow2 -o data_file=" +
                      data + ",data_file_raw=on " + base + " " + image));

  ProcessResult refused = Boot(kRootCmdline, {"--disk", "path=" + image + ",format=qcow2"});
  EXPECT_TRUE(refused.exited && refused.exit_status != 0) << refused.Describe();
  EXPECT_TRUE(Contains(refused.err, "data_file=PATH")) << refused.Describe();

  ProcessResult r = Boot(std::string(kRootCmdline) + (userspace ? " init=/init" : ""),
                         {"--disk", "path=" + image + ",format=qcow2,data_file=" + data});
  ASSERT_TRUE(r.exited) << "kite did not exit by itself\n" << r.Describe();
  EXPECT_TRUE(Contains(r.out, kExt4Mounted)) << r.Describe();
  EXPECT_TRUE(Contains(r.out, kRootReadWrite)) << r.Describe();
  EXPECT_TRUE(Contains(r.out, userspace ? kUserspaceMarker : kNoInit)) << r.Describe();

  ProcessResult check = Shell("qemu-img check -f qcow2 " + image);
  EXPECT_EQ(check.exit_status, 0) << check.Describe();
  EXPECT_LT(std::filesystem::file_size(image), 1u << 20) << "guest data went into the qcow2 file";
  Superblock sb_after = ReadSuperblock(data);  // data_file_raw: the data file is the disk
  EXPECT_EQ(sb_after.mount_count, sb_before.mount_count + 1);
  if (userspace) {
    ProcessResult cat = Shell("debugfs -R 'cat /hello' " + data + " 2>/dev/null");
    EXPECT_EQ(cat.out, kHelloText) << cat.Describe();
  }
}

TEST_F(VirtioE2eTest, G19_ReadOnlyDisk_RootMountFallsBackToReadOnly_ImageUnchanged) {
  std::string image = MakeRootfs("ro.raw", /*userspace=*/false);
  ASSERT_FALSE(image.empty());
  const std::string before = ReadFile(image);
  ProcessResult r = Boot(kRootCmdline, {"--disk", "path=" + image + ",format=raw,readonly=on"});
  ASSERT_TRUE(r.exited) << "kite did not exit by itself\n" << r.Describe();
  EXPECT_TRUE(Contains(r.out, kRootReadOnly)) << r.Describe();
  EXPECT_FALSE(Contains(r.out, kRootReadWrite)) << r.Describe();
  EXPECT_EQ(r.exit_status, kExitReset) << r.Describe();
  EXPECT_TRUE(ReadFile(image) == before) << "a read-only disk changed";
  EXPECT_EQ(ReadSuperblock(image).mount_count, 0);
}

// The loopback interface is down in the nested KVM VM (scripts/kvm-vm); slirp needs it.
void EnsureLoopbackUp() {
  std::ifstream flags_file("/sys/class/net/lo/flags");
  unsigned flags = 0;
  flags_file >> std::hex >> flags;
  if ((flags & 1) == 0 && ::geteuid() == 0) Shell("ip link set lo up");
}

// One boot: DHCP from slirp, and netconsole to 10.0.2.2, which slirp maps to 127.0.0.1. The
// local address is given to netconsole because it starts before ip=dhcp has an answer. Where
// userspace runs, the same boot also pings the gateway from the initramfs and powers off.
TEST_F(VirtioE2eTest, UserNat_DhcpConfiguresGuest_NetconsoleReachesHostLoopback) {
  EnsureLoopbackUp();
  UdpListener listener;
  ASSERT_TRUE(listener.Start("127.0.0.1")) << "bind 127.0.0.1: " << strerror(errno);
  std::string port = std::to_string(listener.port());
  std::string cmdline = " ip=dhcp netconsole=@10.0.2.15/eth0," + port + "@10.0.2.2/";
  std::vector<std::string> args = {"--net", "user"};
  bool userspace = HardwareBackedKvm();
  if (userspace) {
    std::string initrd = ScriptOutput({"/bin/bash", LinuxDir() + "/build-initramfs.sh"});
    ASSERT_FALSE(initrd.empty()) << "build-initramfs.sh failed";
    args.insert(args.end(), {"--initrd", initrd});
    cmdline += " kite.test=ping-gateway";
  }
  ProcessResult r = Boot(cmdline, args);
  std::string udp = listener.Stop(milliseconds(500));
  SaveLog("--- netconsole (UDP) ---\n" + udp);
  ASSERT_TRUE(r.exited) << "kite did not exit by itself\n" << r.Describe();
  EXPECT_TRUE(Contains(r.out, "IP-Config: Got DHCP answer from 10.0.2.2, my address is 10.0.2.15"))
      << r.Describe();
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(ipaddr=10\.0\.2\.15, mask=255\.255\.255\.0)")))
      << r.Describe();
  EXPECT_TRUE(Contains(udp, "network logging started")) << "UDP got: " << udp << r.Describe();
  EXPECT_TRUE(Contains(udp, "IP-Config: Complete")) << "UDP got: " << udp << r.Describe();
  if (userspace) {
    EXPECT_TRUE(Contains(r.out, "kite-guest: ping 10.0.2.2 ok")) << r.Describe();
    EXPECT_EQ(r.exit_status, 0) << "the initramfs powers off" << r.Describe();
  } else {
    EXPECT_EQ(r.exit_status, kExitReset) << "no root: panic=1 resets" << r.Describe();
  }
}

TEST_F(VirtioE2eTest, Tap_StaticIp_NetconsoleReachesHostUdpSocket) {
  if (::geteuid() != 0) GTEST_SKIP() << "skipped: creating a tap device needs root";
  TapDevice tap("kitetap" + std::to_string(::getpid() % 100000));
  ASSERT_TRUE(tap.Create()) << "could not set up " << tap.name();
  UdpListener listener;
  ASSERT_TRUE(listener.Start("192.168.222.1")) << "bind 192.168.222.1: " << strerror(errno);
  std::string port = std::to_string(listener.port());
  std::string cmdline =
      " ip=192.168.222.2::192.168.222.1:255.255.255.0::eth0:off "
      "netconsole=@192.168.222.2/eth0," +
      port + "@192.168.222.1/";
  std::vector<std::string> args = {"--net", "tap=" + tap.name()};
  // Where userspace runs, the guest also pings the host with 9000-byte frames: each reply
  // reaches the guest through the tap's direct receive path across several receive buffers.
  bool userspace = HardwareBackedKvm();
  if (userspace) {
    ASSERT_TRUE(ShellOk("ip link set " + tap.name() + " mtu 9000"));
    std::string initrd = ScriptOutput({"/bin/bash", LinuxDir() + "/build-initramfs.sh"});
    ASSERT_FALSE(initrd.empty()) << "build-initramfs.sh failed";
    args.insert(args.end(), {"--initrd", initrd});
    cmdline += " kite.test=ping-host kite.ping=192.168.222.1 kite.mtu=9000";
  }
  ProcessResult r = Boot(cmdline, args);
  std::string udp = listener.Stop(milliseconds(500));
  SaveLog("--- netconsole (UDP) ---\n" + udp);
  ASSERT_TRUE(r.exited) << "kite did not exit by itself\n" << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ipaddr=192.168.222.2")) << r.Describe();
  EXPECT_TRUE(Contains(udp, "network logging started")) << "UDP got: " << udp << r.Describe();
  EXPECT_TRUE(Contains(udp, "IP-Config: Complete")) << "UDP got: " << udp << r.Describe();
  if (userspace) {
    EXPECT_TRUE(Contains(r.out, "kite-guest: ping 192.168.222.1 size 8972 ok")) << r.Describe();
    EXPECT_EQ(r.exit_status, 0) << "the initramfs powers off" << r.Describe();
  } else {
    EXPECT_EQ(r.exit_status, kExitReset) << "no root: panic=1 resets" << r.Describe();
  }
}

}  // namespace
}  // namespace kite::testing
