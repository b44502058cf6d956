// The VM lifecycle through the embedding API (include/kite/kite.h), on the `counter` guest
// (guest-firmware/programs/counter.c: "counter: <n> ticks <t>" every 20 ms):
//   * Pause(): the output stops; Resume(): it goes on; events STOP and RESUME;
//   * SaveSnapshot() of a paused VM, the machine ended, Machine::Restore() in its place: the
//     count continues from where it was (not from 1) and the LAPIC timer still ticks;
//   * the run states along the way, and the refusals of C9 (snapshot while running).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "kite/kite.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite {
namespace {

using namespace std::chrono_literals;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The counts and tick values of the complete "counter: N ticks T" lines of `text`.
struct Line {
  uint32_t n;
  uint32_t ticks;
};
std::vector<Line> Counts(const std::string& text) {
  std::vector<Line> out;
  static const std::regex re(R"(counter: (\d+) ticks (\d+)\n)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    out.push_back(
        {static_cast<uint32_t>(std::stoul((*it)[1])), static_cast<uint32_t>(std::stoul((*it)[2]))});
  }
  return out;
}

// Waits until `path` holds at least `lines` counter lines.
bool WaitForCounts(const std::string& path, size_t lines, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Counts(ReadFile(path)).size() >= lines) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

VmConfig CounterConfig(const std::string& serial_path) {
  VmConfig config;
  config.kernel = std::string(KITE_GUEST_FIRMWARE_DIR) + "/counter.elf";
  config.memory = 128ull << 20;
  config.serial = SerialMode::kFile;
  config.serial_path = serial_path;
  config.host_quirks = false;
  return config;
}

class EventLog {
 public:
  void Add(const Event& e) {
    std::lock_guard lock(mutex_);
    names_.push_back(e.name);
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mutex_);
    return names_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> names_;
};

TEST(Lifecycle, PauseStopsOutput_ResumeContinues_Events) {
  KITE_REQUIRE_KVM();
  testing::TempDir dir;
  std::string out = dir.File("serial.txt");
  auto machine = Machine::Create(CounterConfig(out));
  ASSERT_TRUE(machine) << machine.error().message();
  Machine& m = **machine;
  EventLog events;
  m.Subscribe([&](const Event& e) { events.Add(e); });
  ASSERT_TRUE(m.Start());
  EXPECT_EQ(m.state(), RunState::kRunning);
  ASSERT_TRUE(WaitForCounts(out, 3, 60s)) << ReadFile(out);

  ASSERT_TRUE(m.Pause());
  EXPECT_EQ(m.state(), RunState::kPaused);
  std::string at_pause = ReadFile(out);
  std::this_thread::sleep_for(300ms);  // 15 lines' worth of guest time
  EXPECT_EQ(ReadFile(out), at_pause) << "the guest printed while paused";
  EXPECT_TRUE(m.Pause()) << "a second stop is a no-op (QEMU)";

  ASSERT_TRUE(m.Resume());
  EXPECT_EQ(m.state(), RunState::kRunning);
  size_t before = Counts(at_pause).size();
  ASSERT_TRUE(WaitForCounts(out, before + 3, 60s)) << "no output after cont";
  std::vector<Line> lines = Counts(ReadFile(out));
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i].n, i + 1);

  m.Quit();
  VmOutcome outcome = m.Wait();
  EXPECT_EQ(outcome.end, VmEnd::kStopped);
  EXPECT_EQ(m.state(), RunState::kShutdown);
  std::vector<std::string> names = events.names();
  std::vector<std::string> expected = {"STOP", "RESUME", "SHUTDOWN"};
  EXPECT_EQ(names, expected);
}

TEST(Lifecycle, SnapshotWhileRunning_Refused_StateUnchanged) {
  KITE_REQUIRE_KVM();
  testing::TempDir dir;
  auto machine = Machine::Create(CounterConfig(dir.File("serial.txt")));
  ASSERT_TRUE(machine);
  ASSERT_TRUE((*machine)->Start());
  auto saved = (*machine)->SaveSnapshot({dir.File("snap")});
  ASSERT_FALSE(saved);
  EXPECT_NE(saved.error().message().find("must be paused"), std::string::npos)
      << saved.error().message();
  EXPECT_EQ((*machine)->state(), RunState::kRunning);
  EXPECT_FALSE(std::filesystem::exists(dir.File("snap")));
  (*machine)->Quit();
  (void)(*machine)->Wait();
}

TEST(Lifecycle, SnapshotRestore_CountContinues_TimerTicks) {
  KITE_REQUIRE_KVM();
  testing::TempDir dir;
  std::string out1 = dir.File("serial1.txt");
  std::string snap = dir.File("snap");
  uint32_t last_before = 0;
  uint32_t ticks_before = 0;
  {
    auto machine = Machine::Create(CounterConfig(out1));
    ASSERT_TRUE(machine);
    ASSERT_TRUE((*machine)->Start());
    ASSERT_TRUE(WaitForCounts(out1, 10, 60s)) << ReadFile(out1);
    ASSERT_TRUE((*machine)->Pause());
    auto saved = (*machine)->SaveSnapshot({snap});
    ASSERT_TRUE(saved) << saved.error().message();
    EXPECT_EQ((*machine)->state(), RunState::kPaused);
    std::vector<Line> lines = Counts(ReadFile(out1));
    last_before = lines.back().n;
    ticks_before = lines.back().ticks;
    (*machine)->Quit();
    (void)(*machine)->Wait();
  }
  for (const char* f : {"state", "memory", "config.json"}) {
    EXPECT_TRUE(std::filesystem::exists(snap + "/" + f)) << f;
  }

  std::string out2 = dir.File("serial2.txt");
  RestoreOptions options;
  options.path = snap;
  options.override_serial = true;
  options.serial = SerialMode::kFile;
  options.serial_path = out2;
  auto restored = Machine::Restore(options);
  ASSERT_TRUE(restored) << restored.error().message();
  EXPECT_EQ((*restored)->state(), RunState::kRunning);
  ASSERT_TRUE(WaitForCounts(out2, 5, 60s)) << ReadFile(out2);
  (*restored)->Quit();
  (void)(*restored)->Wait();

  // The first whole line after the restore continues the count (a line cut by the pause is
  // finished first, so the first complete one may be the one after it).
  std::vector<Line> after = Counts(ReadFile(out2));
  ASSERT_FALSE(after.empty());
  EXPECT_GE(after.front().n, last_before + 1) << ReadFile(out2);
  EXPECT_LE(after.front().n, last_before + 2) << ReadFile(out2);
  for (size_t i = 1; i < after.size(); ++i) EXPECT_EQ(after[i].n, after[i - 1].n + 1);
  // The LAPIC timer survived: ticks keep growing from their saved value.
  EXPECT_GT(after.back().ticks, ticks_before);
}

// A --transport pci machine (docs/PCI.md): its virtio-pci functions' state (configuration
// space, MSI-X table, vectors, the virtio transport) goes through a snapshot and a restore in a
// new machine. The counter guest never drives the functions, so they are restored un-activated.
TEST(Lifecycle, SnapshotRestore_PciTransportMachine_CountContinues) {
  KITE_REQUIRE_KVM();
  testing::TempDir dir;
  std::string disk = dir.File("disk.raw");
  testing::WriteFile(disk, std::string(1 << 20, '\0'));
  std::string out1 = dir.File("serial1.txt");
  std::string snap = dir.File("snap");
  uint32_t last_before = 0;
  {
    VmConfig config = CounterConfig(out1);
    config.transport = VirtioTransportKind::kPci;
    DiskConfig disk_config;
    disk_config.path = disk;
    disk_config.format = "raw";
    config.disks.push_back(disk_config);
    auto machine = Machine::Create(config);
    ASSERT_TRUE(machine) << machine.error().message();
    ASSERT_TRUE((*machine)->Start());
    ASSERT_TRUE(WaitForCounts(out1, 5, 60s)) << ReadFile(out1);
    ASSERT_TRUE((*machine)->Pause());
    auto saved = (*machine)->SaveSnapshot({snap});
    ASSERT_TRUE(saved) << saved.error().message();
    last_before = Counts(ReadFile(out1)).back().n;
    (*machine)->Quit();
    (void)(*machine)->Wait();
  }
  EXPECT_NE(ReadFile(snap + "/config.json").find("\"transport\": \"pci\""), std::string::npos)
      << ReadFile(snap + "/config.json");
  std::string out2 = dir.File("serial2.txt");
  RestoreOptions options;
  options.path = snap;
  options.override_serial = true;
  options.serial = SerialMode::kFile;
  options.serial_path = out2;
  auto restored = Machine::Restore(options);
  ASSERT_TRUE(restored) << restored.error().message();
  ASSERT_TRUE(WaitForCounts(out2, 3, 60s)) << ReadFile(out2);
  (*restored)->Quit();
  (void)(*restored)->Wait();
  std::vector<Line> after = Counts(ReadFile(out2));
  ASSERT_FALSE(after.empty());
  EXPECT_GE(after.front().n, last_before + 1) << ReadFile(out2);
}

TEST(Lifecycle, RestorePaused_InMigrate_ThenCont) {
  KITE_REQUIRE_KVM();
  testing::TempDir dir;
  std::string snap = dir.File("snap");
  {
    auto machine = Machine::Create(CounterConfig(dir.File("serial1.txt")));
    ASSERT_TRUE(machine);
    ASSERT_TRUE((*machine)->Start());
    ASSERT_TRUE(WaitForCounts(dir.File("serial1.txt"), 2, 60s));
    ASSERT_TRUE((*machine)->Pause());
    ASSERT_TRUE((*machine)->SaveSnapshot({snap}));
    (*machine)->Quit();
    (void)(*machine)->Wait();
  }
  std::string out2 = dir.File("serial2.txt");
  RestoreOptions options;
  options.path = snap;
  options.paused = true;
  options.override_serial = true;
  options.serial = SerialMode::kFile;
  options.serial_path = out2;
  auto restored = Machine::Restore(options);
  ASSERT_TRUE(restored) << restored.error().message();
  EXPECT_EQ((*restored)->state(), RunState::kInMigrate);
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(Counts(ReadFile(out2)).empty()) << "a paused restore ran the guest";
  ASSERT_TRUE((*restored)->Resume());
  EXPECT_TRUE(WaitForCounts(out2, 2, 60s));
  (*restored)->Quit();
  (void)(*restored)->Wait();
}

// F12 and the disk checks at the level a user sees: every bad snapshot is refused before the
// guest runs, with a message naming what is wrong.
TEST(Lifecycle, Restore_BadSnapshots_RefusedBeforeAnythingRuns) {
  KITE_REQUIRE_KVM();
  testing::TempDir dir;
  std::string disk = dir.File("disk.raw");
  testing::WriteFile(disk, std::string(1 << 20, '\0'));
  std::string snap = dir.File("snap");
  {
    VmConfig config = CounterConfig(dir.File("serial1.txt"));
    DiskConfig disk_config;
    disk_config.path = disk;
    disk_config.format = "raw";
    config.disks.push_back(disk_config);
    auto machine = Machine::Create(config);
    ASSERT_TRUE(machine) << machine.error().message();
    ASSERT_TRUE((*machine)->Start());
    ASSERT_TRUE(WaitForCounts(dir.File("serial1.txt"), 2, 60s));
    ASSERT_TRUE((*machine)->Pause());
    ASSERT_TRUE((*machine)->SaveSnapshot({snap}));
    (*machine)->Quit();
    (void)(*machine)->Wait();
  }
  auto restore = [&](const std::string& path) {
    RestoreOptions options;
    options.path = path;
    options.override_serial = true;
    options.serial = SerialMode::kFile;
    options.serial_path = dir.File("serial2.txt");
    return Machine::Restore(options);
  };
  auto copy = [&](const std::string& name) {
    std::string to = dir.File(name);
    std::filesystem::copy(snap, to, std::filesystem::copy_options::recursive);
    return to;
  };
  auto expect_refused = [&](const std::string& path, const std::string& why) {
    auto r = restore(path);
    ASSERT_FALSE(r) << path << " was restored";
    EXPECT_NE(r.error().message().find(why), std::string::npos) << r.error().message();
    EXPECT_TRUE(Counts(ReadFile(dir.File("serial2.txt"))).empty()) << "the guest ran";
  };

  std::string truncated = copy("truncated");
  std::filesystem::resize_file(truncated + "/state",
                               std::filesystem::file_size(truncated + "/state") / 2);
  expect_refused(truncated, "state");

  std::string flipped = copy("flipped");
  std::string bytes = ReadFile(flipped + "/state");
  bytes[bytes.size() / 2] ^= 0x10;
  testing::WriteFile(flipped + "/state", bytes);
  expect_refused(flipped, "CRC");

  std::string short_memory = copy("short-memory");
  std::filesystem::resize_file(short_memory + "/memory", (128ull << 20) - 4096);
  expect_refused(short_memory, "memory");

  // The disk written after the snapshot: its contents no longer match the guest's memory.
  std::this_thread::sleep_for(20ms);
  testing::WriteFile(disk, std::string(1 << 20, 'x'));
  expect_refused(snap, "modified after the snapshot");
}

// examples/embed/snapshot_clone.cc, as a user would run it: both clones continue the count.
TEST(Lifecycle, SnapshotCloneExample_ClonesContinue) {
  KITE_REQUIRE_KVM();
  testing::TempDir dir;
  std::string snap = dir.File("snap");
  testing::ProcessOptions o;
  o.argv = {KITE_SNAPSHOT_EXAMPLE, std::string(KITE_GUEST_FIRMWARE_DIR) + "/counter.elf", snap};
  o.timeout = 120s;
  auto r = testing::RunProcess(o);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->exit_status, 0) << r->Describe();
  EXPECT_NE(r->err.find("event: STOP"), std::string::npos) << r->err;
  std::vector<Line> boot = Counts(ReadFile(snap + ".boot.txt"));
  ASSERT_FALSE(boot.empty());
  for (int i = 0; i < 2; ++i) {
    std::vector<Line> clone = Counts(ReadFile(snap + ".clone-" + std::to_string(i) + ".txt"));
    ASSERT_FALSE(clone.empty()) << "clone " << i;
    EXPECT_GE(clone.front().n, boot.back().n + 1);
    EXPECT_LE(clone.front().n, boot.back().n + 2);
  }
}

}  // namespace
}  // namespace kite
