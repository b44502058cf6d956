// `kite ctl` against a QmpServer in this process: exit statuses, values, the snapshot helper.
#include "vmm/control/ctl.h"

#include <gtest/gtest.h>

#include "testing/temp_dir.h"
#include "vmm/control/qmp_server.h"

namespace kite::ctl {
namespace {

using nlohmann::json;

class CtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VmConfig config;
    config.kernel = "vmlinux";
    auto created = Machine::Create(config);
    ASSERT_TRUE(created);
    machine_ = std::move(*created);
    path_ = dir_.File("vm.sock");
    auto started = qmp::QmpServer::Start(*machine_, path_);
    ASSERT_TRUE(started) << started.error().message();
    server_ = std::move(*started);
  }
  int Ctl(std::vector<std::string> args) { return RunCtl(args); }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Machine> machine_;
  std::unique_ptr<qmp::QmpServer> server_;
};

TEST_F(CtlTest, Query_Status0) {
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(Ctl({path_, "query-status"}), 0);
  std::fflush(stdout);
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(json::parse(out)["status"], "prelaunch") << out;
}

TEST_F(CtlTest, JsonOutput_RawReplyLine) {
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(Ctl({"--json", path_, "query-kvm"}), 0);
  std::fflush(stdout);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "{\"return\":{\"enabled\":true,\"present\":true}}\n");
}

TEST_F(CtlTest, UnknownCommand_Status1WithClass) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Ctl({path_, "nosuch"}), 1);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("CommandNotFound"), std::string::npos);
}

TEST_F(CtlTest, BadArgument_Status1) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Ctl({path_, "stop", "bogus=1"}), 1);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("Parameter 'bogus' is unexpected"),
            std::string::npos);
}

TEST_F(CtlTest, UsageErrors_Status2) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Ctl({}), 2);
  EXPECT_EQ(Ctl({path_}), 2);
  EXPECT_EQ(Ctl({"--nope", path_, "query-status"}), 2);
  EXPECT_EQ(Ctl({path_, "stop", "novalue"}), 2);
  EXPECT_EQ(Ctl({path_, "snapshot"}), 2);
  ::testing::internal::GetCapturedStderr();
}

TEST_F(CtlTest, NoServer_Status1) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Ctl({dir_.File("none.sock"), "query-status"}), 1);
  ::testing::internal::GetCapturedStderr();
}

TEST_F(CtlTest, Snapshot_NotPausable_ReportsError) {
  // In prelaunch the VM is not running, so nothing is stopped, and the save is refused.
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Ctl({path_, "snapshot", "snap/"}), 1);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("VM must be paused"), std::string::npos);
}

TEST(CtlValue, QmpShellRule) {
  EXPECT_EQ(ParseValue("12"), json(12));
  EXPECT_EQ(ParseValue("true"), json(true));
  EXPECT_EQ(ParseValue("[1]"), json::array({1}));
  EXPECT_EQ(ParseValue("{\"a\":1}"), json({{"a", 1}}));
  EXPECT_EQ(ParseValue("null"), json("null"));
  EXPECT_EQ(ParseValue("disk.qcow2"), json("disk.qcow2"));
  EXPECT_EQ(ParseValue("\"q\""), json("\"q\""));
}

}  // namespace
}  // namespace kite::ctl
