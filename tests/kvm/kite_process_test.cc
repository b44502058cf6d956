// Unit tests of RunProcess (tests/testing/kite_process.h), driven with /bin/sh.
#include "testing/kite_process.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace kite::testing {
namespace {

ProcessResult RunSh(const std::string& script, ProcessOptions options = {}) {
  options.argv = {"/bin/sh", "-c", script};
  Result<ProcessResult> r = RunProcess(options);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
  return r ? *r : ProcessResult{};
}

TEST(RunProcess, ExitStatus_AndBothStreams_Captured) {
  ProcessResult r = RunSh("echo out; echo err >&2; exit 3");
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.exit_status, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);
}

TEST(RunProcess, Timeout_KillsProcess) {
  ProcessOptions o;
  o.timeout = std::chrono::milliseconds(300);
  ProcessResult r = RunSh("echo started; exec sleep 30", o);
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.exited);
  EXPECT_EQ(r.term_signal, SIGKILL);
  EXPECT_EQ(r.out, "started\n");
  EXPECT_LT(r.elapsed.count(), 5000);
}

TEST(RunProcess, StopMarker_KillsAsSoonAsSeen) {
  ProcessOptions o;
  o.stop_when_stdout_contains = "ready";
  ProcessResult r = RunSh("echo ready; exec sleep 30", o);
  EXPECT_TRUE(r.stopped);
  EXPECT_FALSE(r.timed_out);
  EXPECT_LT(r.elapsed.count(), 5000);
}

TEST(RunProcess, StdinAfterMarker_DeliveredThen) {
  ProcessOptions o;
  o.stdin_after = "prompt";
  o.stdin_data = "abc\n";
  ProcessResult r = RunSh("echo prompt; read line; echo got=$line", o);
  EXPECT_EQ(r.exit_status, 0);
  EXPECT_EQ(r.out, "prompt\ngot=abc\n");
}

TEST(RunProcess, MissingProgram_Status127) {
  ProcessOptions o;
  o.argv = {"/nonexistent/kite"};
  Result<ProcessResult> r = RunProcess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_status, 127);
}

TEST(RunProcess, EmptyArgv_Error) {
  Result<ProcessResult> r = RunProcess(ProcessOptions{});
  EXPECT_FALSE(r.has_value());
}

}  // namespace
}  // namespace kite::testing
