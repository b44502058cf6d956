// QMP conformance: the same scripted session against QEMU (the oracle: qemu-system-x86_64
// -machine microvm -accel tcg -S) and against `kite run --api-sock PATH --paused`, comparing the
// *shapes* of the answers (keys and JSON types, recursively) and the order of events and
// returns: greeting, a command before negotiation, qmp_capabilities, query-status,
// query-version, an unknown command, a malformed request, a bad argument, cont and stop with
// their events written before the return. research/CONTROL-PLANE.md §1.
//
// Needs `kite run --api-sock` and `--paused` (wired in src/vmm/main.cc and cli.cc). Under
// CI=true a missing qemu-system-x86_64 or /dev/kvm is a failure, never a skip
// (testing/tool_required.h, testing/kvm_required.h).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// A child process, killed at scope end.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

 private:
  pid_t pid_ = -1;
};

// The scripted session; each step's messages, by name.
std::map<std::string, std::vector<json>> RunSession(const std::string& path) {
  std::map<std::string, std::vector<json>> out;
  QmpClient client;
  EXPECT_TRUE(client.Connect(path, 30000ms)) << path;
  out["greeting"] = {client.Read()};
  out["before-negotiation"] = client.Execute(R"({"execute":"query-status"})");
  out["qmp_capabilities"] = client.Execute(R"({"execute":"qmp_capabilities"})");
  out["query-status"] = client.Execute(R"({"execute":"query-status","id":"a"})");
  out["query-version"] = client.Execute(R"({"execute":"query-version"})");
  out["unknown"] = client.Execute(R"({"execute":"nosuchcmd","id":{"x":[1,2]}})");
  out["malformed"] = client.Execute(R"({"execute": })");
  out["bad-argument"] = client.Execute(R"({"execute":"stop","arguments":{"bogus":1}})");
  out["cont"] = client.Execute(R"({"execute":"cont"})");
  out["stop"] = client.Execute(R"({"execute":"stop"})");
  out["status-paused"] = client.Execute(R"({"execute":"query-status"})");
  return out;
}

// Same JSON types and object keys, recursively; arrays compare their first elements when
// both have one. Differences are appended to `diff` with their path.
void CompareShapes(const json& kite, const json& qemu, const std::string& path, std::string* diff) {
  auto type = [](const json& j) { return j.is_number() ? std::string("number") : j.type_name(); };
  if (type(kite) != type(qemu)) {
    *diff += path + ": kite " + type(kite) + ", qemu " + type(qemu) + "\n";
    return;
  }
  if (kite.is_object()) {
    for (auto& [key, value] : qemu.items()) {
      if (!kite.contains(key)) *diff += path + "." + key + ": missing in kite\n";
    }
    for (auto& [key, value] : kite.items()) {
      if (!qemu.contains(key)) {
        *diff += path + "." + key + ": kite only\n";
      } else {
        CompareShapes(value, qemu[key], path + "." + key, diff);
      }
    }
  } else if (kite.is_array() && !kite.empty() && !qemu.empty()) {
    CompareShapes(kite[0], qemu[0], path + "[0]", diff);
  }
}

std::map<std::string, std::vector<json>> QemuSession(const std::string& qemu, TempDir& dir) {
  std::string sock = dir.File("qemu.sock");
  Child child({qemu, "-machine", "microvm", "-accel", "tcg", "-display", "none", "-nodefaults",
               "-S", "-qmp", "unix:" + sock + ",server=on,wait=off"});
  return RunSession(sock);
}

TEST(QmpConformance, QemuOracle_SessionAsRecorded) {
  KITE_REQUIRE_TOOL("qemu-system-x86_64");
  std::string qemu = FindTool("qemu-system-x86_64");
  TempDir dir;
  auto s = QemuSession(qemu, dir);
  EXPECT_TRUE(s["greeting"][0].contains("QMP"));
  EXPECT_EQ(s["before-negotiation"][0]["error"]["class"], "CommandNotFound");
  EXPECT_EQ(s["query-status"][0]["return"]["status"], "prelaunch");
  EXPECT_EQ(s["unknown"][0]["id"], json({{"x", {1, 2}}}));
  ASSERT_EQ(s["cont"].size(), 2u);
  EXPECT_EQ(s["cont"][0]["event"], "RESUME");
  ASSERT_EQ(s["stop"].size(), 2u);
  EXPECT_EQ(s["stop"][0]["event"], "STOP");
}

TEST(QmpConformance, Kite_SameShapesAsQemu) {
  KITE_REQUIRE_KVM();
  KITE_REQUIRE_TOOL("qemu-system-x86_64");
  std::string qemu = FindTool("qemu-system-x86_64");
  TempDir dir;
  auto expected = QemuSession(qemu, dir);
  std::string sock = dir.File("kite.sock");
  std::map<std::string, std::vector<json>> actual;
  {
    Child kite({KITE_BINARY, "run", "--kernel",
                std::string(KITE_GUEST_FIRMWARE_DIR) + "/serial_echo.elf", "--memory", "128M",
                "--serial", "none", "--api-sock", sock, "--paused"});
    actual = RunSession(sock);
  }
  for (auto& [step, messages] : expected) {
    ASSERT_EQ(actual[step].size(), messages.size())
        << step << ": kite " << json(actual[step]) << " qemu " << json(messages);
    std::string diff;
    for (size_t i = 0; i < messages.size(); ++i) {
      CompareShapes(actual[step][i], messages[i], step + "#" + std::to_string(i), &diff);
    }
    EXPECT_EQ(diff, "") << "kite " << json(actual[step]) << "\nqemu " << json(messages);
  }
  EXPECT_EQ(actual["cont"][0]["event"], "RESUME");
  EXPECT_EQ(actual["stop"][0]["event"], "STOP");
  EXPECT_EQ(actual["status-paused"][0]["return"]["status"], "paused");
}

}  // namespace
}  // namespace kite::testing
