// What the e2e tests of the "counter" guest share (make-rootfs.sh counter: a busybox /init that
// appends N to /counter, syncs, pings the NAT gateway and prints one line per count): parsing
// its lines, running tools, and a kite process on its own thread.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "linux_guest.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {

using namespace std::chrono_literals;

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CounterLine {
  int n = 0;
  bool net_up = false;
  int64_t time = 0;
  std::string uuid;
  uint64_t size = 0;    // vda's sectors
  std::string carrier;  // eth0's carrier: "0", "1"
};

inline std::vector<CounterLine> CounterLines(const std::string& text) {
  static const std::regex re(
      R"(kite-counter: (\d+) net (up|down) time (\d+) uuid ([0-9a-f-]+)(?: size (\d+) carrier (\w+))?[^\n]*\n)");
  std::vector<CounterLine> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    const std::smatch& m = *it;
    out.push_back({std::stoi(m[1]), m[2] == "up", std::stoll(m[3]), m[4],
                   m[5].matched ? std::stoull(m[5]) : 0, m[6]});
  }
  return out;
}

inline int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline ProcessResult RunTool(std::vector<std::string> argv,
                             std::chrono::milliseconds timeout = 120s) {
  ProcessOptions o;
  o.argv = std::move(argv);
  o.timeout = timeout;
  Result<ProcessResult> r = RunProcess(o);
  EXPECT_TRUE(r.has_value());
  return r ? *r : ProcessResult{};
}

inline bool Sh(const std::string& command, std::string* out = nullptr) {
  ProcessResult r = RunTool({"/bin/sh", "-c", "PATH=\"$PATH:/usr/sbin:/sbin\"; " + command});
  if (out) *out = r.out;
  EXPECT_TRUE(r.exited && r.exit_status == 0) << command << "\n" << r.Describe();
  return r.exited && r.exit_status == 0;
}

// A kite process on its own thread (a boot or a restore), killable with SIGKILL.
class KiteInBackground {
 public:
  explicit KiteInBackground(std::vector<std::string> argv) {
    thread_ = std::thread([this, argv = std::move(argv)] {
      ProcessOptions o;
      o.argv = argv;
      o.timeout = 300s;
      o.on_spawn = [this](int pid) { pid_.store(pid); };
      Result<ProcessResult> r = RunProcess(o);
      if (r) result_ = *r;
      done_.store(true);
    });
  }
  bool running() const { return !done_.load(); }
  int pid() const { return pid_.load(); }
  ~KiteInBackground() { Join(); }
  void Kill() {
    if (int pid = pid_.load(); pid > 0) ::kill(pid, SIGKILL);
  }
  const ProcessResult& Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  std::atomic<int> pid_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
  ProcessResult result_;
};

// A fixture for tests that boot the Linux guest with userspace: KVM whose guests run it (else
// a skip, or a failure under CI=true) and kite's own guest kernel (kernel_). A derived SetUp
// calls this one first and returns when IsSkipped() or HasFatalFailure().
class UserspaceGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KITE_REQUIRE_GUEST_USERSPACE();
    kernel_ = FindGuestKernel();
    if (kernel_.empty()) {
      FAIL() << "kite's guest kernel is not built (guest-firmware/linux/guest-kernel.sh; "
                "scripts/test.sh builds it)";
    }
  }

  std::string kernel_;
};

// A fixture for tests of the counter guest: UserspaceGuestTest, and in dir_ the guest's root
// file system base.raw (64 MiB, ext4) under a qcow2 overlay root.qcow2. Needs KITE_SOURCE_DIR
// and KITE_IMG_BINARY.
inline constexpr uint64_t kRootMiB = 64;

class CounterGuestTest : public UserspaceGuestTest {
 protected:
  void SetUp() override {
    UserspaceGuestTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    std::string base = dir_.File("base.raw");
    ASSERT_TRUE(Sh("/bin/bash " + std::string(KITE_SOURCE_DIR) + "/tests/e2e/make-rootfs.sh " +
                   base + " " + std::to_string(kRootMiB) + " counter"));
    ASSERT_TRUE(Sh(std::string(KITE_IMG_BINARY) + " create -f qcow2 -b " + base + " -F raw " +
                   dir_.File("root.qcow2")));
  }

  TempDir dir_;
};

}  // namespace kite::testing
