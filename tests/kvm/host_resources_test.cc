// Host resources through the embedding API (docs/CLI.md "Host resources"), on the `counter`
// guest (guest-firmware/programs/counter.c: "counter: <n> ...", every 20 ms):
//   * guest RAM from 2 MiB huge pages, preallocated, private or a shared memfd: the guest runs,
//     the pages come out of the host's pool, and a snapshot of it restores into huge pages;
//   * vCPU pinning and the emulator pin: each thread runs where the config says.
// The huge page pool is the host's: the tests add the pages they use and take them back.
#include "vmm/host_resources.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "kite/kite.h"
#include "testing/huge_page_pool.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite {
namespace {

using namespace std::chrono_literals;
using testing::HugePagePool;
using testing::MemInfo;

constexpr uint64_t kGuestMemory = 64ull << 20;
constexpr uint64_t kPages = kGuestMemory / (2ull << 20);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t CountLines(const std::string& path) {
  static const std::regex re(R"(counter: \d+ ticks \d+\n)");
  std::string text = ReadFile(path);
  return std::distance(std::sregex_iterator(text.begin(), text.end(), re), {});
}

bool WaitForLines(const std::string& path, size_t lines) {
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (CountLines(path) >= lines) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

VmConfig CounterConfig(const std::string& serial_path) {
  VmConfig config;
  config.kernel = std::string(KITE_GUEST_FIRMWARE_DIR) + "/counter.elf";
  config.memory = kGuestMemory;
  config.serial = SerialMode::kFile;
  config.serial_path = serial_path;
  config.host_quirks = false;
  return config;
}

class HugePages : public ::testing::TestWithParam<bool> {};

// The guest runs on huge pages taken from the pool when the machine is built (prealloc), a
// snapshot of it restores into huge pages again, and the count goes on.
TEST_P(HugePages, GuestRunsOnPoolPages_SnapshotRestoresIntoThem) {
  KITE_REQUIRE_KVM();
  HugePagePool pool(kPages);
  KITE_REQUIRE_HUGE_PAGES(pool);
  testing::TempDir dir;
  VmConfig config = CounterConfig(dir.File("serial1.txt"));
  config.memory_backing = {.hugepage_size = 2ull << 20, .prealloc = true, .shared = GetParam()};
  const uint64_t free_before = MemInfo("HugePages_Free");
  {
    auto machine = Machine::Create(config);
    ASSERT_TRUE(machine) << machine.error().message();
    ASSERT_TRUE((*machine)->Start());
    ASSERT_TRUE(WaitForLines(config.serial_path, 5)) << ReadFile(config.serial_path);
    EXPECT_EQ(free_before - MemInfo("HugePages_Free"), kPages) << "preallocated from the pool";
    ASSERT_TRUE((*machine)->Pause());
    auto saved = (*machine)->SaveSnapshot({dir.File("snap")});
    ASSERT_TRUE(saved) << saved.error().message();
    (*machine)->Quit();
    (void)(*machine)->Wait();
  }
  EXPECT_EQ(MemInfo("HugePages_Free"), free_before) << "the pages went back to the pool";

  RestoreOptions options;
  options.path = dir.File("snap");
  options.override_serial = true;
  options.serial = SerialMode::kFile;
  options.serial_path = dir.File("serial2.txt");
  auto restored = Machine::Restore(options);
  ASSERT_TRUE(restored) << restored.error().message();
  EXPECT_EQ((*restored)->config().memory_backing, config.memory_backing);
  EXPECT_EQ(free_before - MemInfo("HugePages_Free"), kPages);
  ASSERT_TRUE(WaitForLines(options.serial_path, 3)) << ReadFile(options.serial_path);
  (*restored)->Quit();
  (void)(*restored)->Wait();
}

INSTANTIATE_TEST_SUITE_P(PrivateAndShared, HugePages, ::testing::Bool());

// More pages than the pool holds: Create or Start fails at once, naming the pool, and nothing
// runs (never a SIGBUS when the guest first touches a page).
TEST(HugePagesShort, PoolTooSmall_ClearErrorAtStart) {
  KITE_REQUIRE_KVM();
  HugePagePool pool(kPages / 2);
  KITE_REQUIRE_HUGE_PAGES(pool);
  testing::TempDir dir;
  VmConfig config = CounterConfig(dir.File("serial.txt"));
  config.memory_backing.hugepage_size = 2ull << 20;
  // Only our pages are free (other users of the pool hold theirs): ask for more than that.
  config.memory = (MemInfo("HugePages_Free") + 1) * (2ull << 20);
  auto machine = Machine::Create(config);
  ASSERT_TRUE(machine) << machine.error().message();
  auto started = (*machine)->Start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message().find("from 2 MiB huge pages"), std::string::npos)
      << started.error().message();
  EXPECT_NE(started.error().message().find("free pages"), std::string::npos)
      << started.error().message();
  EXPECT_EQ(ReadFile(config.serial_path), "");
}

// "Cpus_allowed_list" of one of this process's threads.
std::string AllowedList(int64_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Cpus_allowed_list:", 0) == 0) {
      return line.substr(line.find_first_not_of(" \t", 18));
    }
  }
  return "";
}

// Threads of this process whose name starts with `prefix`.
std::vector<int64_t> ThreadsNamed(const std::string& prefix) {
  std::vector<int64_t> tids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::string comm = ReadFile(entry.path().string() + "/comm");
    if (comm.rfind(prefix, 0) == 0) tids.push_back(std::stoll(entry.path().filename().string()));
  }
  return tids;
}

// vCPU 0 on the last CPU this process may use, vCPU 1 without a list of its own, everything
// else of kite's on the first: query-cpus-fast's thread ids show where each runs. Built on a
// thread of its own, which the emulator pin pins.
TEST(Pinning, VcpusAndEmulatorThreadsRunWhereConfigured) {
  KITE_REQUIRE_KVM();
  cpu_set_t set;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
  std::vector<uint32_t> allowed;
  for (uint32_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) allowed.push_back(cpu);
  }
  ASSERT_FALSE(allowed.empty());
  const std::string all = AllowedList(::gettid());
  std::thread([&] {
    testing::TempDir dir;
    VmConfig config = CounterConfig(dir.File("serial.txt"));
    config.cpus = 2;
    config.cpu_affinity = {{allowed.back()}, *ParseCpuList(FormatCpuList(allowed))};
    config.emulator_affinity = {allowed.front()};
    auto machine = Machine::Create(config);
    ASSERT_TRUE(machine) << machine.error().message();
    ASSERT_TRUE((*machine)->Start());
    ASSERT_TRUE(WaitForLines(config.serial_path, 3)) << ReadFile(config.serial_path);
    std::vector<CpuInfo> cpus = (*machine)->Cpus();
    ASSERT_EQ(cpus.size(), 2u);
    EXPECT_EQ(AllowedList(cpus[0].thread_id), std::to_string(allowed.back()));
    EXPECT_EQ(AllowedList(cpus[1].thread_id), FormatCpuList(config.cpu_affinity[1]));
    std::vector<int64_t> loops = ThreadsNamed("kite-loop");
    ASSERT_FALSE(loops.empty());
    for (int64_t tid : loops) EXPECT_EQ(AllowedList(tid), std::to_string(allowed.front()));
    EXPECT_EQ(AllowedList(::gettid()), std::to_string(allowed.front()));
    (*machine)->Quit();
    (void)(*machine)->Wait();
  }).join();
  EXPECT_EQ(AllowedList(::gettid()), all) << "the test's own thread was not pinned";
}

}  // namespace
}  // namespace kite
