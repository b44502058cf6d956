// VmConfig validation and exit statuses.
#include <gtest/gtest.h>

#include "kite/kite.h"

namespace kite {
namespace {

VmConfig Good() {
  VmConfig c;
  c.kernel = "vmlinux";
  return c;
}

std::string Invalid(const VmConfig& c) {
  auto r = ValidateVmConfig(c);
  EXPECT_FALSE(r);
  return r ? "" : r.error().message();
}

TEST(VmConfig, Defaults_Valid) {
  EXPECT_TRUE(ValidateVmConfig(Good()));
}

TEST(VmConfig, CpusZero_Refused) {
  VmConfig c = Good();
  c.cpus = 0;
  EXPECT_NE(Invalid(c).find("cpus"), std::string::npos);
}

TEST(VmConfig, Cpus255_Refused) {
  VmConfig c = Good();
  c.cpus = 255;
  EXPECT_NE(Invalid(c).find("1 to 254"), std::string::npos);
}

TEST(VmConfig, Cpus254_Valid) {
  VmConfig c = Good();
  c.cpus = 254;
  EXPECT_TRUE(ValidateVmConfig(c));
}

TEST(VmConfig, MemoryTooSmall_Refused) {
  VmConfig c = Good();
  c.memory = 4 << 20;
  EXPECT_NE(Invalid(c).find("too small"), std::string::npos);
}

TEST(VmConfig, MemoryHuge_Refused) {
  VmConfig c = Good();
  c.memory = 1ull << 50;
  EXPECT_NE(Invalid(c).find("too large"), std::string::npos);
}

TEST(VmConfig, MemoryNotPageMultiple_Refused) {
  VmConfig c = Good();
  c.memory = (64 << 20) + 1;
  EXPECT_NE(Invalid(c).find("4 KiB"), std::string::npos);
}

TEST(VmConfig, NoKernel_Refused) {
  VmConfig c = Good();
  c.kernel.clear();
  EXPECT_NE(Invalid(c).find("kernel"), std::string::npos);
}

TEST(VmConfig, SerialFileWithoutPath_Refused) {
  VmConfig c = Good();
  c.serial = SerialMode::kFile;
  EXPECT_NE(Invalid(c).find("serial"), std::string::npos);
}

TEST(VmConfig, K9_CmdlineWithNul_Refused) {
  VmConfig c = Good();
  c.cmdline = std::string("console=ttyS0\0x", 15);
  EXPECT_NE(Invalid(c).find("NUL"), std::string::npos);
}

TEST(VmConfig, UnknownCpuTemplate_Refused) {
  VmConfig c = Good();
  c.cpu_template = "skylake";
  EXPECT_NE(Invalid(c).find("cpu_template"), std::string::npos);
}

TEST(VmConfig, ExitStatusesPerContract) {
  EXPECT_EQ((VmOutcome{VmEnd::kPowerOff, ""}).ExitStatus(), 0);
  EXPECT_EQ((VmOutcome{VmEnd::kError, ""}).ExitStatus(), 1);
  EXPECT_EQ((VmOutcome{VmEnd::kReset, ""}).ExitStatus(), 2);
  EXPECT_EQ((VmOutcome{VmEnd::kCrash, ""}).ExitStatus(), 3);
  EXPECT_EQ((VmOutcome{VmEnd::kStopped, ""}).ExitStatus(), 130);
}

}  // namespace
}  // namespace kite
