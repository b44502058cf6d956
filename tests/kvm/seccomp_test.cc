// seccomp in the kite executable (docs/SECURITY.md, BAD_INPUTS.md F15): every thread of a
// running kite carries its own filter on top of the main thread's; a call outside a thread's
// list (the test hook KITE_TEST_SECCOMP_VIOLATION makes one: execve) ends kite with SIGSYS and
// a line naming the thread kind and the call, in each kind of thread; --seccomp=log lets it
// run; --seccomp=off installs nothing.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using namespace std::chrono_literals;

std::string Firmware(const std::string& program) {
  return std::string(KITE_GUEST_FIRMWARE_DIR) + "/" + program + ".elf";
}

// A long-running guest with every kind of thread: a raw disk (io_uring and workers), the
// control socket, the serial console on stdio (output writer, input reader).
std::vector<std::string> KiteArgs(const TempDir& dir, const std::string& seccomp) {
  {
    std::ofstream disk(dir.File("disk.raw"), std::ios::binary);
    disk.seekp((4 << 20) - 1);
    disk.put('\0');
  }
  return {KITE_BINARY,  "run",
          "--kernel",   Firmware("counter"),
          "--disk",     "path=" + dir.File("disk.raw") + ",format=raw",
          "--api-sock", dir.File("api.sock"),
          "--seccomp",  seccomp};
}

// `argv` run through a shell that turns core dumps off (SIGSYS dumps core by default) and sets
// the test hook for `violate` (empty: none).
ProcessOptions Options(std::vector<std::string> argv, const std::string& violate) {
  std::string command = "ulimit -c 0; exec env";
  if (!violate.empty()) command += " KITE_TEST_SECCOMP_VIOLATION=" + violate;
  for (const std::string& a : argv) command += " '" + a + "'";
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", command};
  options.timeout = 60s;
  return options;
}

struct ThreadInfo {
  std::string name;
  int seccomp_mode = -1;  // /proc status "Seccomp": 0 none, 2 filter
  int filters = -1;       // "Seccomp_filters": how many filters apply
};

std::vector<ThreadInfo> Threads(int pid) {
  std::vector<ThreadInfo> threads;
  std::string task = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& entry : std::filesystem::directory_iterator(task)) {
    ThreadInfo info;
    std::ifstream status(entry.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("Name:\t", 0) == 0) info.name = line.substr(6);
      if (line.rfind("Seccomp:\t", 0) == 0) info.seccomp_mode = std::stoi(line.substr(9));
      if (line.rfind("Seccomp_filters:\t", 0) == 0) info.filters = std::stoi(line.substr(17));
    }
    threads.push_back(info);
  }
  return threads;
}

// Runs kite with `args`, waits for its control socket, hands the pid to `inspect`, then quits.
ProcessResult RunAndInspect(const TempDir& dir, std::vector<std::string> args,
                            const std::function<void(int pid, QmpClient&)>& inspect) {
  std::promise<int> spawned;
  ProcessOptions options = Options(std::move(args), "");
  options.stdin_data = "";
  options.on_spawn = [&](int pid) { spawned.set_value(pid); };
  auto run = std::async(std::launch::async, [&] { return RunProcess(options); });
  int pid = spawned.get_future().get();
  QmpClient client;
  if (client.Connect(dir.File("api.sock"), 30000ms)) {
    client.Read();  // greeting
    client.Execute(R"({"execute":"qmp_capabilities"})");
    inspect(pid, client);
    client.Send(R"({"execute":"quit"})");
  } else {
    ADD_FAILURE() << "no control socket at " << dir.File("api.sock");
  }
  Result<ProcessResult> result = run.get();
  EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message());
  return result ? *result : ProcessResult{};
}

TEST(Seccomp, EveryThreadRunsUnderItsOwnFilter) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  std::map<std::string, ThreadInfo> by_name;
  ProcessResult r = RunAndInspect(dir, KiteArgs(dir, "on"), [&](int pid, QmpClient&) {
    for (const ThreadInfo& t : Threads(pid)) {
      EXPECT_EQ(t.seccomp_mode, 2) << t.name << " runs without a seccomp filter";
      by_name[t.name] = t;
    }
  });
  EXPECT_TRUE(r.exited) << r.Describe();
  // One thread of each kind this VM has; each added its own filter to the main thread's.
  for (const char* name :
       {"kite-signal", "kite-vcpu0", "kite-loop", "kite-disk", "kite-uring", "kite-output",
        "kite-console", "kite-api", "kite-api-cmd", "kite-hotplug"}) {
    ASSERT_TRUE(by_name.count(name)) << name << " is not running; " << r.Describe();
    EXPECT_EQ(by_name[name].filters, 2) << name;
  }
  ASSERT_TRUE(by_name.count("kite"));
  EXPECT_EQ(by_name["kite"].filters, 1) << "the main thread";
}

TEST(Seccomp, Off_NoThreadFiltered) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  size_t count = 0;
  ProcessResult r = RunAndInspect(dir, KiteArgs(dir, "off"), [&](int pid, QmpClient&) {
    for (const ThreadInfo& t : Threads(pid)) {
      EXPECT_EQ(t.seccomp_mode, 0) << t.name;
      ++count;
    }
  });
  EXPECT_TRUE(r.exited) << r.Describe();
  EXPECT_GE(count, 8u);
}

// F15, once per kind of thread: the hook's execve in that thread ends kite with SIGSYS and a
// line that names the kind and the call.
class SeccompViolation : public ::testing::TestWithParam<const char*> {};

TEST_P(SeccompViolation, F15_KilledWithSigsysAndReason) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  const std::string kind = GetParam();
  ProcessOptions options = Options(KiteArgs(dir, "on"), kind);
  options.stdin_data = "";
  std::future<void> job;
  if (kind == "block-job") {
    // The job thread starts with a drive-backup.
    options.on_spawn = [&](int) {
      job = std::async(std::launch::async, [&] {
        QmpClient client;
        if (!client.Connect(dir.File("api.sock"), 30000ms)) return;
        client.Read();
        client.Execute(R"({"execute":"qmp_capabilities"})");
        client.Send(R"({"execute":"drive-backup","arguments":{"device":"vda","sync":"full",)"
                    R"("target":")" +
                    dir.File("backup.qcow2") + R"("}})");
      });
    };
  }
  Result<ProcessResult> result = RunProcess(options);
  if (job.valid()) job.wait();
  ASSERT_TRUE(result.has_value()) << result.error().message();
  const ProcessResult& r = *result;
  EXPECT_EQ(r.term_signal, SIGSYS) << r.Describe();
  EXPECT_FALSE(r.timed_out) << r.Describe();
  EXPECT_NE(r.err.find("kite: seccomp: the " + kind + " thread '"), std::string::npos)
      << r.Describe();
  EXPECT_NE(r.err.find("called execve (59"), std::string::npos) << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(EachKind, SeccompViolation,
                         ::testing::Values("main", "signal", "vcpu", "event-loop", "disk-worker",
                                           "uring-completion", "console-input", "console-output",
                                           "api-server", "api-command", "hotplug", "block-job"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

// --seccomp=log: the same call is logged by the kernel and runs (execve(NULL) fails with
// EFAULT), and the guest goes on to its end.
TEST(Seccomp, LogMode_DeniedCallRuns_GuestFinishes) {
  KITE_REQUIRE_KVM();
  ProcessOptions options =
      Options({KITE_BINARY, "run", "--kernel", Firmware("hello"), "--seccomp=log"}, "vcpu");
  Result<ProcessResult> r = RunProcess(options);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(r->exited) << r->Describe();
  EXPECT_EQ(r->exit_status, 0) << r->Describe();
  EXPECT_NE(r->out.find("kite guest is alive"), std::string::npos) << r->Describe();
  EXPECT_EQ(r->err.find("kite: seccomp:"), std::string::npos) << r->Describe();
}

}  // namespace
}  // namespace kite::testing
