// Unit tests of the oracle-tool policy (tests/testing/tool_required.h): lookup on PATH, the
// message, and what a missing tool does to the running test with and without CI=true.
#include "testing/tool_required.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

// Sets (or unsets) an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(FindTool, ProgramOnPath_FoundAsExecutablePath) {
  std::string sh = FindTool("sh");
  ASSERT_FALSE(sh.empty());
  EXPECT_EQ(sh.substr(sh.size() - 3), "/sh");
  EXPECT_EQ(::access(sh.c_str(), X_OK), 0);
}

TEST(FindTool, Missing_Empty) {
  EXPECT_EQ(FindTool("kite-no-such-tool"), "");
  EXPECT_EQ(FindTool(""), "");
}

TEST(FindTool, Path_CheckedAsGiven) {
  EXPECT_EQ(FindTool("/bin/sh"), "/bin/sh");
  EXPECT_EQ(FindTool("/nonexistent/sh"), "");
}

TEST(FindTool, EmptyPath_NotFound) {
  TempDir dir;
  ScopedEnv path("PATH", dir.path().c_str());
  EXPECT_EQ(FindTool("sh"), "");
}

TEST(ToolsUnavailableReason, AllPresent_Empty) {
  EXPECT_EQ(ToolsUnavailableReason({"sh", "/bin/sh"}), "");
}

TEST(ToolsUnavailableReason, Missing_NamedWithPackage) {
  TempDir dir;
  ScopedEnv path("PATH", dir.path().c_str());
  EXPECT_EQ(ToolsUnavailableReason({"qemu-img", "iasl", "kite-no-such-tool"}),
            "qemu-img (qemu-utils), iasl (acpica-tools), kite-no-such-tool not found on PATH");
}

// Runs `fn` with the test results it reports caught in `results` instead of the running test's.
template <typename Fn>
void Intercepted(::testing::TestPartResultArray* results, Fn fn) {
  ::testing::ScopedFakeTestPartResultReporter reporter(
      ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, results);
  fn();
}

TEST(ToolsOrMarkSkipped, Present_TrueAndNothingReported) {
  ::testing::TestPartResultArray results;
  bool present = false;
  Intercepted(&results, [&] { present = ToolsOrMarkSkipped({"sh"}); });
  EXPECT_TRUE(present);
  EXPECT_EQ(results.size(), 0);
}

TEST(ToolsOrMarkSkipped, MissingOutsideCi_Skipped) {
  ScopedEnv ci("CI", nullptr);
  ::testing::TestPartResultArray results;
  bool present = true;
  Intercepted(&results, [&] { present = ToolsOrMarkSkipped({"kite-no-such-tool"}); });
  EXPECT_FALSE(present);
  ASSERT_EQ(results.size(), 1);
  EXPECT_TRUE(results.GetTestPartResult(0).skipped());
  EXPECT_NE(std::string(results.GetTestPartResult(0).message()).find("kite-no-such-tool"),
            std::string::npos);
}

TEST(ToolsOrMarkSkipped, MissingUnderCi_Failed) {
  ScopedEnv ci("CI", "true");
  ::testing::TestPartResultArray results;
  bool present = true;
  Intercepted(&results, [&] { present = ToolsOrMarkSkipped({"kite-no-such-tool"}); });
  EXPECT_FALSE(present);
  ASSERT_EQ(results.size(), 1);
  EXPECT_TRUE(results.GetTestPartResult(0).fatally_failed());
}

// KITE_REQUIRE_TOOL returns from the function it is used in.
void RequireMissing(bool* went_on) {
  KITE_REQUIRE_TOOL("sh", "kite-no-such-tool");
  *went_on = true;
}

TEST(KiteRequireTool, MissingOutsideCi_SkipsAndReturns) {
  ScopedEnv ci("CI", nullptr);
  ::testing::TestPartResultArray results;
  bool went_on = false;
  Intercepted(&results, [&] { RequireMissing(&went_on); });
  EXPECT_FALSE(went_on);
  ASSERT_EQ(results.size(), 1);
  EXPECT_TRUE(results.GetTestPartResult(0).skipped());
}

TEST(KiteRequireTool, MissingUnderCi_FailsAndReturns) {
  ScopedEnv ci("CI", "true");
  ::testing::TestPartResultArray results;
  bool went_on = false;
  Intercepted(&results, [&] { RequireMissing(&went_on); });
  EXPECT_FALSE(went_on);
  ASSERT_EQ(results.size(), 1);
  EXPECT_TRUE(results.GetTestPartResult(0).fatally_failed());
  EXPECT_NE(std::string(results.GetTestPartResult(0).message()).find("CI=true"), std::string::npos);
}

}  // namespace
}  // namespace kite::testing
