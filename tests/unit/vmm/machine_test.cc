// kite::Machine without a running guest: configuration errors and misuse (no /dev/kvm needed).
#include <gtest/gtest.h>

#include "kite/kite.h"

namespace kite {
namespace {

TEST(Machine, Create_InvalidConfig_Refused) {
  VmConfig config;
  config.kernel = "vmlinux";
  config.cpus = 0;
  auto machine = Machine::Create(config);
  ASSERT_FALSE(machine);
  EXPECT_NE(machine.error().message().find("cpus"), std::string::npos);
}

TEST(Machine, RunVm_InvalidConfig_ErrorOutcomeStatus1) {
  VmConfig config;  // no kernel
  VmOutcome outcome = RunVm(config);
  EXPECT_EQ(outcome.end, VmEnd::kError);
  EXPECT_EQ(outcome.ExitStatus(), 1);
  EXPECT_NE(outcome.detail.find("kernel"), std::string::npos);
}

TEST(Machine, WaitWithoutStart_Error) {
  VmConfig config;
  config.kernel = "vmlinux";
  auto machine = Machine::Create(config);
  ASSERT_TRUE(machine);
  (*machine)->RequestStop();  // nothing running: harmless
  EXPECT_EQ((*machine)->Wait().end, VmEnd::kError);
}

// cont/stop before Start() (an embedder, or a QMP client of a machine not started): an error
// or a no-op, never a call on a VM that does not exist (qmp_fuzzer found Resume's).
TEST(Machine, ResumeAndPauseWithoutStart_NoCrash) {
  VmConfig config;
  config.kernel = "vmlinux";
  auto machine = Machine::Create(config);
  ASSERT_TRUE(machine);
  EXPECT_EQ((*machine)->state(), RunState::kPrelaunch);
  EXPECT_TRUE((*machine)->Pause());
  auto resumed = (*machine)->Resume();
  ASSERT_FALSE(resumed);
  EXPECT_NE(resumed.error().message().find("the machine was not started"), std::string::npos);
  EXPECT_EQ((*machine)->state(), RunState::kPrelaunch);
}

TEST(Machine, Start_MissingKernelOrKvm_ErrorNotCrash) {
  VmConfig config;
  config.kernel = "/nonexistent/vmlinux";
  config.serial = SerialMode::kNone;
  config.host_quirks = false;
  auto machine = Machine::Create(config);
  ASSERT_TRUE(machine);
  auto started = (*machine)->Start();
  ASSERT_FALSE(started);  // no /dev/kvm here, or no kernel file where there is one
  EXPECT_FALSE(started.error().message().empty());
}

}  // namespace
}  // namespace kite
