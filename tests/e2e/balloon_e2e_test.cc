// The memory balloon with a Linux guest running userspace (kite's initramfs, kite.test=balloon:
// it fills a tmpfs with 300 MiB, deletes it and then prints its MemTotal every second), driven
// over QMP as a QEMU user would, with kite's host memory measured from /proc/PID/status
// (VmRSS):
//   * `balloon` shrinks the guest: query-balloon's actual reaches the target, BALLOON_CHANGE
//     says so, the guest's MemTotal drops by the balloon's size, kite's RSS drops (the freed
//     tmpfs pages went into the balloon and back to the host); statistics arrive through
//     qom-get guest-stats; `balloon` back to the whole RAM gives the guest its memory back.
//   * free_page_reporting=on: the guest deletes its file and kite's RSS drops without any
//     inflate.
//   * a snapshot of an inflated guest restores with the balloon's target and actual, and the
//     restored guest deflates when asked.
// Prints the RSS figures (before/after) for the report.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kRam = 512 * kMiB;
constexpr uint64_t kTarget = 160 * kMiB;  // what `balloon` leaves the guest

// kite's resident memory (VmRSS), bytes; 0 when unreadable.
uint64_t Rss(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %llu kB", &kb) == 1) return kb * 1024;
  }
  return 0;
}

// The MemTotal (kB) of the last line of the guest's with `tag` ("filled", "freed", "mem"); 0
// when there is none yet.
uint64_t LastMemTotal(const std::string& serial, const std::string& tag) {
  static const std::regex re(R"(kite-balloon: (\w+) MemTotal: (\d+) kB MemFree: (\d+) kB)");
  uint64_t out = 0;
  for (auto it = std::sregex_iterator(serial.begin(), serial.end(), re);
       it != std::sregex_iterator(); ++it) {
    if ((*it)[1] == tag) out = std::stoull((*it)[2]);
  }
  return out;
}

class BalloonE2e : public UserspaceGuestTest {
 protected:
  void SetUp() override {
    UserspaceGuestTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    initrd_ = ScriptOutput({"/bin/bash", LinuxDir() + "/build-initramfs.sh"});
    ASSERT_FALSE(initrd_.empty()) << "build-initramfs.sh failed";
  }

  void Boot(const std::string& balloon) {
    serial_ = dir_.File("serial.txt");
    std::string sock = dir_.File("api.sock");
    kite_ = std::make_unique<KiteInBackground>(std::vector<std::string>{
        KITE_BINARY, "run", "--kernel", kernel_, "--initrd", initrd_, "--memory", "512M",
        "--cmdline", "console=ttyS0 reboot=k panic=1 quiet kite.test=balloon", "--balloon", balloon,
        "--api-sock", sock, "--serial", "file:" + serial_});
    Connect(sock);
  }
  void Connect(const std::string& sock) {
    qmp_ = std::make_unique<QmpClient>();
    ASSERT_TRUE(qmp_->Connect(sock, 60s)) << Slurp(serial_);
    ASSERT_TRUE(qmp_->Negotiate());
  }
  // Waits for the guest's line `tag` (its MemTotal, kB).
  uint64_t WaitFor(const std::string& tag, std::chrono::seconds timeout = 180s) {
    auto until = Clock::now() + timeout;
    while (Clock::now() < until && kite_->running()) {
      if (uint64_t total = LastMemTotal(Slurp(serial_), tag)) return total;
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "no '" << tag << "' line from the guest\n" << Slurp(serial_);
    return 0;
  }
  // Polls query-balloon until its actual is `bytes`.
  bool WaitActual(uint64_t bytes, std::chrono::seconds timeout = 120s) {
    auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
      json r = qmp_->Run(R"({"execute":"query-balloon"})");
      if (r["return"]["actual"] == bytes) return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }
  // A BALLOON_CHANGE with actual == `bytes` (the ones before it are skipped).
  bool SawChange(uint64_t bytes) {
    for (;;) {
      json e = qmp_->WaitEvent("BALLOON_CHANGE", 5s);
      if (e.is_null()) return false;
      if (e["data"]["actual"] == bytes) return true;
    }
  }
  // Polls the guest's "mem" lines until MemTotal is `kb` (±1 MiB).
  uint64_t WaitMemTotal(uint64_t kb, std::chrono::seconds timeout = 60s) {
    auto until = Clock::now() + timeout;
    uint64_t total = 0;
    while (Clock::now() < until) {
      total = LastMemTotal(Slurp(serial_), "mem");
      if (total + 1024 >= kb && total <= kb + 1024) return total;
      std::this_thread::sleep_for(500ms);
    }
    return total;
  }
  // A failed assertion leaves kite running: it must not outlive the test.
  void TearDown() override {
    if (kite_ && kite_->running()) kite_->Kill();
  }
  void Quit() {
    qmp_->Send(R"({"execute":"quit"})");
    const ProcessResult& r = kite_->Join();
    EXPECT_TRUE(r.exited) << r.Describe();
  }

  TempDir dir_;
  std::string initrd_, serial_;
  std::unique_ptr<KiteInBackground> kite_;
  std::unique_ptr<QmpClient> qmp_;
};

TEST_F(BalloonE2e, Inflate_GuestShrinks_HostRssDrops_StatsArrive_DeflateGivesItBack) {
  Boot("size=0,statistics_interval=1");
  uint64_t total_kb = WaitFor("freed");
  ASSERT_GT(total_kb, 0u);
  std::this_thread::sleep_for(1s);
  const uint64_t rss_before = Rss(kite_->pid());

  json r = qmp_->Run(R"({"execute":"balloon","arguments":{"value":0}})");
  EXPECT_EQ(r["error"]["desc"], "Parameter 'target' expects a size") << r;
  r = qmp_->Run(R"({"execute":"balloon","arguments":{"value":)" + std::to_string(kTarget) + "}}");
  ASSERT_TRUE(r.contains("return")) << r;
  ASSERT_TRUE(WaitActual(kTarget)) << qmp_->Run(R"({"execute":"query-balloon"})") << "\n"
                                   << Slurp(serial_);
  EXPECT_TRUE(SawChange(kTarget));
  const uint64_t shrunk_kb = WaitMemTotal(total_kb - (kRam - kTarget) / 1024);
  EXPECT_NEAR(static_cast<double>(shrunk_kb),
              static_cast<double>(total_kb - (kRam - kTarget) / 1024), 1024.0);
  std::this_thread::sleep_for(1s);
  const uint64_t rss_inflated = Rss(kite_->pid());
  std::printf(
      "balloon inflate to %llu MiB: kite VmRSS %llu MiB -> %llu MiB; guest MemTotal %llu "
      "-> %llu kB\n",
      static_cast<unsigned long long>(kTarget / kMiB),
      static_cast<unsigned long long>(rss_before / kMiB),
      static_cast<unsigned long long>(rss_inflated / kMiB),
      static_cast<unsigned long long>(total_kb), static_cast<unsigned long long>(shrunk_kb));
  EXPECT_LT(rss_inflated + 150 * kMiB, rss_before) << "the inflated pages stayed resident";

  // Statistics (statistics_interval=1), as QEMU's qom-get shows them.
  json stats;
  for (int i = 0; i < 20; ++i) {
    stats = qmp_->Run(
        R"({"execute":"qom-get","arguments":{"path":"/machine/peripheral/balloon0","property":"guest-stats"}})");
    if (stats.contains("return")) break;
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_TRUE(stats.contains("return")) << stats;
  const json& s = stats["return"]["stats"];
  EXPECT_GT(stats["return"]["last-update"].get<int64_t>(), 0);
  EXPECT_GT(s["stat-total-memory"].get<uint64_t>(), 0u);
  EXPECT_LE(s["stat-total-memory"].get<uint64_t>(), kRam);
  EXPECT_GT(s["stat-free-memory"].get<uint64_t>(), 0u);
  EXPECT_LT(s["stat-free-memory"].get<uint64_t>(), s["stat-total-memory"].get<uint64_t>());
  std::printf("guest-stats: %s\n", stats["return"].dump().c_str());
  r = qmp_->Run(
      R"({"execute":"qom-set","arguments":{"path":"/machine/peripheral/balloon0","property":"guest-stats-polling-interval","value":2}})");
  EXPECT_TRUE(r.contains("return")) << r;
  r = qmp_->Run(
      R"({"execute":"qom-get","arguments":{"path":"/machine/peripheral/balloon0","property":"guest-stats-polling-interval"}})");
  EXPECT_EQ(r["return"], 2) << r;

  // Deflate: the guest has all of its RAM again.
  r = qmp_->Run(R"({"execute":"balloon","arguments":{"value":)" + std::to_string(kRam) + "}}");
  ASSERT_TRUE(r.contains("return")) << r;
  ASSERT_TRUE(WaitActual(kRam));
  EXPECT_TRUE(SawChange(kRam));
  EXPECT_EQ(WaitMemTotal(total_kb), total_kb);
  Quit();
}

TEST_F(BalloonE2e, FreePageReporting_GuestFreesMemory_HostRssDrops_WithoutInflate) {
  Boot("size=0,free_page_reporting=on");
  ASSERT_GT(WaitFor("filled"), 0u);
  std::this_thread::sleep_for(1s);
  const uint64_t rss_filled = Rss(kite_->pid());
  ASSERT_GT(WaitFor("freed"), 0u);
  uint64_t rss = rss_filled;
  auto until = Clock::now() + 60s;
  while (Clock::now() < until && rss + 150 * kMiB > rss_filled) {
    std::this_thread::sleep_for(500ms);
    rss = Rss(kite_->pid());
  }
  std::printf(
      "free page reporting: kite VmRSS %llu MiB with 300 MiB in the guest's tmpfs -> "
      "%llu MiB after it was deleted\n",
      static_cast<unsigned long long>(rss_filled / kMiB),
      static_cast<unsigned long long>(rss / kMiB));
  EXPECT_LT(rss + 150 * kMiB, rss_filled) << "the freed pages stayed resident";
  json r = qmp_->Run(R"({"execute":"query-balloon"})");
  EXPECT_EQ(r["return"]["actual"], kRam) << r;  // nothing inflated
  Quit();
}

TEST_F(BalloonE2e, Snapshot_TargetAndActualSurviveRestore_RestoredGuestDeflates) {
  Boot("size=0");
  uint64_t total_kb = WaitFor("freed");
  ASSERT_GT(total_kb, 0u);
  json r =
      qmp_->Run(R"({"execute":"balloon","arguments":{"value":)" + std::to_string(kTarget) + "}}");
  ASSERT_TRUE(r.contains("return")) << r;
  ASSERT_TRUE(WaitActual(kTarget)) << Slurp(serial_);
  ASSERT_TRUE(qmp_->Run(R"({"execute":"stop"})").contains("return"));
  std::string snap = dir_.File("snap");
  r = qmp_->Run(R"({"execute":"x-vm-snapshot-save","arguments":{"path":")" + snap + "\"}}");
  ASSERT_TRUE(r.contains("return")) << r;
  Quit();

  serial_ = dir_.File("serial-restored.txt");
  std::string sock = dir_.File("restored.sock");
  kite_ = std::make_unique<KiteInBackground>(std::vector<std::string>{
      KITE_BINARY, "restore", snap, "--serial", "file:" + serial_, "--api-sock", sock});
  Connect(sock);
  r = qmp_->Run(R"({"execute":"query-balloon"})");
  EXPECT_EQ(r["return"]["actual"], kTarget) << r;
  // The target came back too: the guest does not deflate by itself.
  EXPECT_EQ(WaitMemTotal(total_kb - (kRam - kTarget) / 1024), total_kb - (kRam - kTarget) / 1024);
  EXPECT_EQ(qmp_->Run(R"({"execute":"query-balloon"})")["return"]["actual"], kTarget);
  r = qmp_->Run(R"({"execute":"balloon","arguments":{"value":)" + std::to_string(kRam) + "}}");
  ASSERT_TRUE(r.contains("return")) << r;
  EXPECT_TRUE(WaitActual(kRam));
  EXPECT_EQ(WaitMemTotal(total_kb), total_kb);
  Quit();
}

}  // namespace
}  // namespace kite::testing
