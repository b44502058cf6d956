// Live disk operations with a Linux guest that keeps writing (the "counter" guest of
// make-rootfs.sh: appends N to /counter on its ext4 root, syncs, pings the NAT gateway, prints
// its disk size and carrier). One run, a user's sequence over the control socket:
//   1. blockdev-snapshot-sync: the guest goes on writing into a new overlay; the old image's
//      file is never written again (its bytes are the same minutes later);
//   2. block_resize: the guest sees the new size in /sys/block/vda/size without a reboot;
//   3. set_link down and up: the guest sees carrier 0 (and the gateway stops answering), then
//      carrier 1 and the gateway again;
//   4. drive-backup: a point-in-time copy, consistent as after a power cut (fsck-able, /counter
//      a prefix of 1..N);
//   5. block-commit of the active overlay: READY, block-job-complete, the disk pivots back to
//      the first image;
//   6. block-stream: the raw base is copied into that image and dropped from the chain;
//   7. system_powerdown: the guest powers off cleanly. The image alone (no backing file) then
//      holds every count the guest printed, and qemu-img check and e2fsck find nothing.
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "counter_guest.h"
#include "linux_guest.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

constexpr char kCmdline[] =
    "console=ttyS0 reboot=k panic=1 quiet root=/dev/vda rw rootfstype=ext4 init=/init ip=dhcp "
    "clocksource=kvm-clock kite.limit=100000";
constexpr uint64_t kGrownBytes = (kRootMiB + 16) << 20;

class LiveDiskE2e : public CounterGuestTest {
 protected:
  std::string Path(const std::string& name) const { return dir_.File(name); }

  // The command's result as JSON (kite ctl prints it); fails the test when it failed.
  nlohmann::json Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {KITE_BINARY, "ctl", sock_};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = RunTool(argv, 120s);
    EXPECT_EQ(r.exit_status, 0) << args[0] << ": " << r.Describe();
    if (r.exit_status != 0 && !kite_->running()) {
      ADD_FAILURE() << "kite ended: " << kite_->Join().Describe() << "\n" << Slurp(serial_);
    }
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  // Waits until the guest printed a line after `after` that satisfies `ok`; returns it.
  CounterLine WaitLine(int after, const std::function<bool(const CounterLine&)>& ok) {
    auto deadline = std::chrono::steady_clock::now() + 240s;
    while (std::chrono::steady_clock::now() < deadline && kite_->running()) {
      for (const CounterLine& line : CounterLines(Slurp(serial_))) {
        if (line.n > after && ok(line)) return line;
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "no such counter line after " << after << "\n" << Slurp(serial_);
    return {};
  }
  int Last() {
    std::vector<CounterLine> lines = CounterLines(Slurp(serial_));
    return lines.empty() ? 0 : lines.back().n;
  }
  // Polls query-block-jobs until `done` holds for its list (or 240 s pass).
  void WaitJobs(const std::function<bool(const nlohmann::json&)>& done) {
    auto deadline = std::chrono::steady_clock::now() + 240s;
    while (std::chrono::steady_clock::now() < deadline && kite_->running()) {
      nlohmann::json jobs = Ctl({"query-block-jobs"});
      if (done(jobs)) return;
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "block job did not get there: " << Ctl({"query-block-jobs"}).dump();
  }
  std::string TopFile() {
    nlohmann::json blocks = Ctl({"query-block"});
    return blocks.is_array() && !blocks.empty() ? blocks[0]["inserted"]["file"].get<std::string>()
                                                : "";
  }

  std::string serial_ = dir_.File("serial.txt");
  std::string sock_ = dir_.File("api.sock");
  std::unique_ptr<KiteInBackground> kite_;
};

TEST_F(LiveDiskE2e, SnapshotResizeLinkBackupCommitStream_WhileTheGuestWrites) {
  kite_ = std::make_unique<KiteInBackground>(std::vector<std::string>{
      KITE_BINARY, "run", "--kernel", kernel_, "--memory", "256M", "--cmdline", kCmdline, "--disk",
      "path=" + Path("root.qcow2") + ",format=qcow2", "--net", "user", "--api-sock", sock_,
      "--serial", "file:" + serial_});
  CounterLine first = WaitLine(0, [](const CounterLine& l) { return l.n >= 3 && l.net_up; });
  EXPECT_EQ(first.size, kRootMiB << 11);

  // 1. A live snapshot: root.qcow2 is frozen from here on.
  Ctl({"blockdev-snapshot-sync", "device=vda", "snapshot-file=" + Path("overlay.qcow2")});
  EXPECT_EQ(TopFile(), Path("overlay.qcow2"));
  std::string frozen;
  ASSERT_TRUE(Sh("sha256sum < " + Path("root.qcow2"), &frozen));

  ASSERT_TRUE(kite_->running()) << Slurp(serial_);
  // 2. block_resize: the guest sees the size.
  Ctl({"block_resize", "device=vda", "size=" + std::to_string(kGrownBytes)});
  CounterLine grown =
      WaitLine(Last(), [](const CounterLine& l) { return l.size == (kGrownBytes >> 9); });
  EXPECT_GT(grown.n, 0);

  ASSERT_TRUE(kite_->running()) << Slurp(serial_);
  // 3. set_link: carrier down (no gateway), then up (the gateway answers again).
  Ctl({"set_link", "name=net0", "up=false"});
  CounterLine down =
      WaitLine(Last(), [](const CounterLine& l) { return l.carrier == "0" && !l.net_up; });
  Ctl({"set_link", "name=net0", "up=true"});
  WaitLine(down.n, [](const CounterLine& l) { return l.carrier == "1" && l.net_up; });

  ASSERT_TRUE(kite_->running()) << Slurp(serial_);
  // 4. drive-backup, point in time.
  int before_backup = Last();
  Ctl({"drive-backup", "device=vda", "sync=full", "target=" + Path("backup.qcow2")});
  WaitJobs([](const nlohmann::json& jobs) { return jobs.empty(); });

  ASSERT_TRUE(kite_->running()) << Slurp(serial_);
  // 5. Active commit back into root.qcow2, with the guest writing.
  // QEMU's default base is the bottom of the chain (base.raw): name root.qcow2.
  Ctl({"block-commit", "device=vda", "base=" + Path("root.qcow2")});
  WaitJobs([](const nlohmann::json& jobs) {
    return jobs.size() == 1 && jobs[0]["ready"] == true && jobs[0]["status"] == "ready";
  });
  std::string still;
  ASSERT_TRUE(Sh("sha256sum < " + Path("root.qcow2"), &still));
  EXPECT_NE(still, frozen) << "the commit wrote nothing into root.qcow2";
  Ctl({"block-job-complete", "device=vda"});
  WaitJobs([](const nlohmann::json& jobs) { return jobs.empty(); });
  EXPECT_EQ(TopFile(), Path("root.qcow2"));
  int after_commit = Last();
  WaitLine(after_commit + 2, [](const CounterLine&) { return true; });

  ASSERT_TRUE(kite_->running()) << Slurp(serial_);
  // 6. Stream the raw base into root.qcow2.
  Ctl({"block-stream", "device=vda"});
  WaitJobs([](const nlohmann::json& jobs) { return jobs.empty(); });
  nlohmann::json blocks = Ctl({"query-block"});
  ASSERT_TRUE(blocks.is_array() && blocks.size() == 1) << blocks.dump();
  EXPECT_FALSE(blocks[0]["inserted"].contains("backing_file")) << blocks.dump();
  WaitLine(Last() + 2, [](const CounterLine&) { return true; });

  ASSERT_TRUE(kite_->running()) << Slurp(serial_);
  // 7. Power off; then the disk alone holds every count.
  Ctl({"system_powerdown"});
  const ProcessResult& r = kite_->Join();
  EXPECT_EQ(r.exit_status, 0) << r.Describe() << Slurp(serial_);
  int last = Last();
  ASSERT_GT(last, after_commit);

  std::string out;
  EXPECT_TRUE(Sh("qemu-img check " + Path("root.qcow2")));
  ASSERT_TRUE(Sh("qemu-img info " + Path("root.qcow2"), &out));
  EXPECT_EQ(out.find("backing file"), std::string::npos) << out;
  EXPECT_NE(out.find("virtual size: 80 MiB"), std::string::npos) << out;
  ASSERT_TRUE(Sh("qemu-img convert -O raw " + Path("root.qcow2") + " " + Path("r.raw")));
  EXPECT_TRUE(Sh("e2fsck -fn " + Path("r.raw")));
  ASSERT_TRUE(Sh("debugfs -R 'cat /counter' " + Path("r.raw") + " 2>/dev/null", &out));
  // Every printed count, and perhaps the next one (written and synced before the power button
  // ended the loop, not printed).
  std::string expected;
  for (int i = 1; i <= last; ++i) expected += std::to_string(i) + "\n";
  std::string one_more = expected + std::to_string(last + 1) + "\n";
  EXPECT_TRUE(out == expected || out == one_more) << out << "\nlast printed: " << last;

  // The backup: a consistent file system whose /counter is 1..k, k at least the count when
  // the backup started.
  EXPECT_TRUE(Sh("qemu-img check " + Path("backup.qcow2")));
  ASSERT_TRUE(Sh("qemu-img convert -O raw " + Path("backup.qcow2") + " " + Path("b.raw")));
  ASSERT_TRUE(Sh("e2fsck -fy " + Path("b.raw") + " >/dev/null; e2fsck -fn " + Path("b.raw")));
  ASSERT_TRUE(Sh("debugfs -R 'cat /counter' " + Path("b.raw") + " 2>/dev/null", &out));
  std::string prefix;
  int k = 0;
  for (int i = 1; i <= last; ++i) {
    std::string next = prefix + std::to_string(i) + "\n";
    if (out.compare(0, next.size(), next) != 0) break;
    prefix = next;
    k = i;
  }
  EXPECT_EQ(out, prefix) << "the backup's /counter is not 1..k";
  EXPECT_GE(k, before_backup);
}

}  // namespace
}  // namespace kite::testing
