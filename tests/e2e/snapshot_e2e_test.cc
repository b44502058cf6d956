// End-to-end control plane with a Linux guest that runs userspace (the nested VM of
// scripts/kvm-vm, or hardware KVM): kite's own guest kernel (guest-firmware/linux, with
// VMGenID and evdev) and a busybox /init that counts (make-rootfs.sh "counter": appends N to
// /counter, syncs, pings the NAT gateway, prints "kite-counter: N net up time T uuid U").
//   * Snapshot → kill -9 → restore: the count continues from where it was, every line of
//     /counter is there exactly once, the guest's clock is right (within 2 s of the host's,
//     after 4 s spent dead), the NAT still answers, qemu-img check and e2fsck find nothing.
//   * Two clones of one snapshot at once, each on its own qcow2 overlay: both continue, their
//     disks differ only in what each wrote, and their RNGs reseeded (VMGenID): no random uuid
//     printed after the restore is shared between them.
//   * system_powerdown: the ACPI power button, busybox acpid, a clean power-off: SHUTDOWN and
//     exit status 0.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kLimit = 60;  // counter lines before the guest powers itself off
constexpr char kCmdline[] =
    "console=ttyS0 reboot=k panic=1 quiet root=/dev/vda rw rootfstype=ext4 init=/init ip=dhcp "
    "clocksource=kvm-clock kite.limit=60";

class SnapshotE2e : public CounterGuestTest {
 protected:
  std::vector<std::string> RunArgs(const std::string& serial, const std::string& sock) {
    return {KITE_BINARY,  "run",
            "--kernel",   kernel_,
            "--memory",   "256M",
            "--cmdline",  kCmdline,
            "--disk",     "path=" + dir_.File("root.qcow2") + ",format=qcow2",
            "--net",      "user",
            "--api-sock", sock,
            "--serial",   "file:" + serial};
  }

  ProcessResult Ctl(const std::string& sock, std::vector<std::string> args) {
    std::vector<std::string> argv = {KITE_BINARY, "ctl", sock};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunTool(argv, 60s);
  }

  // Boots, waits for `lines` counter lines with the network up, pauses and saves to `snap`,
  // then kills kite with SIGKILL. Returns the last count printed before the pause.
  int BootAndSnapshot(const std::string& snap, int lines) {
    std::string serial = dir_.File("boot.txt"), sock = dir_.File("boot.sock");
    KiteInBackground kite(RunArgs(serial, sock));
    auto deadline = std::chrono::steady_clock::now() + 240s;
    while (std::chrono::steady_clock::now() < deadline && kite.running()) {
      std::vector<CounterLine> got = CounterLines(Slurp(serial));
      if (static_cast<int>(got.size()) >= lines && got.back().net_up) break;
      std::this_thread::sleep_for(100ms);
    }
    ProcessResult stop = Ctl(sock, {"stop"});
    EXPECT_EQ(stop.exit_status, 0) << stop.Describe();
    ProcessResult save = Ctl(sock, {"x-vm-snapshot-save", "path=" + snap});
    EXPECT_EQ(save.exit_status, 0) << save.Describe();
    kite.Kill();
    const ProcessResult& r = kite.Join();
    EXPECT_EQ(r.term_signal, SIGKILL) << r.Describe();
    std::vector<CounterLine> got = CounterLines(Slurp(serial));
    EXPECT_GE(static_cast<int>(got.size()), lines) << Slurp(serial);
    return got.empty() ? 0 : got.back().n;
  }
};

TEST_F(SnapshotE2e, KillRestore_CountContinues_DiskClean_ClockRight_NatWorks) {
  std::string snap = dir_.File("snap");
  int last = BootAndSnapshot(snap, 15);
  ASSERT_GT(last, 0);
  std::this_thread::sleep_for(4s);  // dead time the guest clock must make up for

  std::string serial = dir_.File("restored.txt");
  int64_t restore_start = Now();
  ProcessResult r = RunTool({KITE_BINARY, "restore", snap, "--serial", "file:" + serial}, 240s);
  int64_t restore_end = Now();
  ASSERT_EQ(r.exit_status, 0) << r.Describe() << Slurp(serial);

  std::vector<CounterLine> after = CounterLines(Slurp(serial));
  ASSERT_FALSE(after.empty()) << Slurp(serial);
  EXPECT_GE(after.front().n, last + 1) << Slurp(serial);
  EXPECT_LE(after.front().n, last + 2) << Slurp(serial);
  EXPECT_EQ(after.back().n, kLimit);
  for (size_t i = 1; i < after.size(); ++i) EXPECT_EQ(after[i].n, after[i - 1].n + 1);
  // The guest's wall clock after the restore: within 2 s of the host's.
  for (const CounterLine& line : after) {
    EXPECT_GE(line.time, restore_start - 2) << "line " << line.n;
    EXPECT_LE(line.time, restore_end + 2) << "line " << line.n;
  }
  EXPECT_TRUE(after.back().net_up) << "the NAT gateway did not answer after the restore";
  EXPECT_NE(Slurp(serial).find("kite-counter: powering off (limit 60)"), std::string::npos);

  // The disk: consistent, and /counter holds 1..60 exactly once each.
  std::string out;
  EXPECT_TRUE(Sh("qemu-img check " + dir_.File("root.qcow2")));
  ASSERT_TRUE(Sh("qemu-img convert -O raw " + dir_.File("root.qcow2") + " " + dir_.File("r.raw")));
  EXPECT_TRUE(Sh("e2fsck -fn " + dir_.File("r.raw")));
  ASSERT_TRUE(Sh("debugfs -R 'cat /counter' " + dir_.File("r.raw") + " 2>/dev/null", &out));
  std::string expected;
  for (int i = 1; i <= kLimit; ++i) expected += std::to_string(i) + "\n";
  EXPECT_EQ(out, expected);
}

TEST_F(SnapshotE2e, TwoClones_BothContinue_OwnOverlays_RngReseeded) {
  std::string snap = dir_.File("snap");
  int last = BootAndSnapshot(snap, 10);
  ASSERT_GT(last, 0);
  std::vector<std::string> serials, overlays;
  std::vector<std::unique_ptr<KiteInBackground>> clones;
  for (int i = 0; i < 2; ++i) {
    std::string tmp = dir_.File("clone" + std::to_string(i));
    std::filesystem::create_directories(tmp);
    serials.push_back(dir_.File("clone" + std::to_string(i) + ".txt"));
    clones.push_back(std::make_unique<KiteInBackground>(
        std::vector<std::string>{"/usr/bin/env", "TMPDIR=" + tmp, KITE_BINARY, "restore", snap,
                                 "--disk-overlays", "--serial", "file:" + serials.back()}));
    overlays.push_back(tmp);
  }
  std::vector<std::set<std::string>> uuids(2);
  for (int i = 0; i < 2; ++i) {
    const ProcessResult& r = clones[i]->Join();
    ASSERT_EQ(r.exit_status, 0) << r.Describe();
    std::vector<CounterLine> after = CounterLines(Slurp(serials[i]));
    ASSERT_GE(after.size(), 3u) << Slurp(serials[i]);
    EXPECT_LE(after.front().n, last + 2);
    EXPECT_EQ(after.back().n, kLimit);
    // The first line may come before the guest saw the new generation id.
    for (size_t k = 1; k < after.size(); ++k) uuids[i].insert(after[k].uuid);
  }
  for (const std::string& u : uuids[0]) {
    EXPECT_EQ(uuids[1].count(u), 0u) << "both clones produced random uuid " << u;
  }
  // Each clone wrote into its own overlay; the snapshot's image was never written.
  std::string out0, out1;
  for (int i = 0; i < 2; ++i) {
    std::string found;
    ASSERT_TRUE(Sh("ls " + overlays[i] + "/kite-clone-*/vda.qcow2", &found));
    found.erase(found.find_last_not_of('\n') + 1);
    EXPECT_TRUE(Sh("qemu-img check " + found));
    std::string raw = overlays[i] + "/r.raw";
    ASSERT_TRUE(Sh("qemu-img convert -O raw " + found + " " + raw));
    EXPECT_TRUE(Sh("e2fsck -fn " + raw));
    ASSERT_TRUE(Sh("debugfs -R 'cat /counter' " + raw + " 2>/dev/null", i == 0 ? &out0 : &out1));
  }
  std::string expected;
  for (int i = 1; i <= kLimit; ++i) expected += std::to_string(i) + "\n";
  EXPECT_EQ(out0, expected);
  EXPECT_EQ(out1, expected);
}

TEST_F(SnapshotE2e, SystemPowerdown_GuestShutsDownCleanly_Status0) {
  std::string serial = dir_.File("boot.txt"), sock = dir_.File("boot.sock");
  KiteInBackground kite(RunArgs(serial, sock));
  auto deadline = std::chrono::steady_clock::now() + 240s;
  while (std::chrono::steady_clock::now() < deadline && kite.running() &&
         CounterLines(Slurp(serial)).size() < 5) {
    std::this_thread::sleep_for(100ms);
  }
  ProcessResult p = Ctl(sock, {"system_powerdown"});
  EXPECT_EQ(p.exit_status, 0) << p.Describe();
  const ProcessResult& r = kite.Join();
  EXPECT_EQ(r.exit_status, 0) << r.Describe() << Slurp(serial);
  EXPECT_NE(Slurp(serial).find("kite-counter: powering off (power button)"), std::string::npos)
      << Slurp(serial);
  EXPECT_LT(CounterLines(Slurp(serial)).back().n, kLimit);
  std::string out;
  ASSERT_TRUE(Sh("qemu-img convert -O raw " + dir_.File("root.qcow2") + " " + dir_.File("r.raw")));
  EXPECT_TRUE(Sh("e2fsck -fn " + dir_.File("r.raw")));
}

}  // namespace
}  // namespace kite::testing
