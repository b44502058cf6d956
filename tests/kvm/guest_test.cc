// Runs each guest-firmware program under `kite run` and checks what it prints on the serial
// port and kite's exit status (the contract: 0 power off, 1 kite error, 2 reset with
// --on-reboot exit, 3 guest crash). Every test runs both link variants of its guest:
// "pvh" (PVH note, the guest sets up long mode) and "lm" (no note, kite sets up long mode).
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using std::chrono::milliseconds;

// Emulated KVM (MACHINE.md) runs guest code ~1000x slower: generous, but bounded.
constexpr milliseconds kGuestTimeout{90000};

std::string GuestPath(const std::string& program, const std::string& variant) {
  return std::string(KITE_GUEST_FIRMWARE_DIR) + "/" + program + (variant == "lm" ? "-lm" : "") +
         ".elf";
}

ProcessResult RunKite(std::vector<std::string> args, ProcessOptions options = {}) {
  options.argv = {KITE_BINARY, "run"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  if (options.timeout == ProcessOptions{}.timeout) options.timeout = kGuestTimeout;
  Result<ProcessResult> r = RunProcess(options);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
  return r ? *r : ProcessResult{};
}

class GuestTest : public ::testing::TestWithParam<std::string> {
 protected:
  // kite run --kernel <guest> --memory 128M --serial stdio <extra...>
  ProcessResult RunGuest(const std::string& program, std::vector<std::string> extra = {},
                         ProcessOptions options = {}) {
    std::vector<std::string> args = {
        "--kernel", GuestPath(program, GetParam()), "--memory", "128M", "--serial", "stdio"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunKite(args, options);
  }
};

TEST_P(GuestTest, Hello_PrintsLine_PowersOffStatus0) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("hello");
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("hello: kite guest is alive\n"), std::string::npos) << r.Describe();
}

TEST_P(GuestTest, Reboot_OnRebootExit_Status2) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("reboot", {"--on-reboot", "exit"});
  EXPECT_EQ(r.exit_status, 2) << r.Describe();
  EXPECT_NE(r.out.find("reboot: requesting reset"), std::string::npos) << r.Describe();
  EXPECT_EQ(r.out.find("reset did not happen"), std::string::npos) << r.Describe();
}

TEST_P(GuestTest, Int3_HandlerRunsAndReturns) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("int3");
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("int3: #BP handler called"), std::string::npos) << r.Describe();
  EXPECT_NE(r.out.find("int3: returned from handler"), std::string::npos) << r.Describe();
}

TEST_P(GuestTest, UnknownPort_ReadsAllOnes_WritesDropped) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("unknown_port");
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("unknown_port: ok"), std::string::npos) << r.Describe();
}

TEST_P(GuestTest, Smp_TwoCpus_ApStartsWithApicId1) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("smp", {"--cpus", "2"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("apic id 1\n"), std::string::npos) << r.Describe();
  EXPECT_NE(r.out.find("smp: 2 cpus up"), std::string::npos) << r.Describe();
}

TEST_P(GuestTest, Timer_LapicTimerTicks) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("timer");
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("timer: ok"), std::string::npos) << r.Describe();
}

TEST_P(GuestTest, TripleFault_ReportedAsCrash_Status3) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("triple_fault");
  EXPECT_EQ(r.exit_status, 3) << r.Describe();
  EXPECT_NE(r.out.find("triple_fault: loading an empty IDT"), std::string::npos) << r.Describe();
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.Describe();
  EXPECT_FALSE(r.err.empty()) << "kite must say why the guest stopped\n" << r.Describe();
}

TEST_P(GuestTest, SerialEcho_EchoesInputUntilQ) {
  KITE_REQUIRE_KVM();
  ProcessOptions o;
  o.stdin_after = "serial_echo: ready";
  o.stdin_data = "kite\nq";
  ProcessResult r = RunGuest("serial_echo", {}, o);
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("kite"), std::string::npos) << r.Describe();
  EXPECT_NE(r.out.find("serial_echo: bye"), std::string::npos) << r.Describe();
}

// The vendor the guest sees is the host's (KVM passes it through; MACHINE.md: some hosts
// ignore KVM_SET_CPUID2 entirely), and the boot CPU's APIC id is 0.
TEST_P(GuestTest, Cpuid_HostVendor_BspApicId0) {
  KITE_REQUIRE_KVM();
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, vendor;
  while (std::getline(cpuinfo, line) && vendor.empty()) {
    if (line.rfind("vendor_id", 0) == 0) vendor = line.substr(line.find(':') + 2);
  }
  ProcessResult r = RunGuest("cpuid", {"--cpus", "2"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("cpuid: vendor=" + vendor + " "), std::string::npos) << r.Describe();
  EXPECT_NE(r.out.find(" apic_id=0 "), std::string::npos) << r.Describe();
}

// 128 MiB: RAM below 640 KiB plus 1 MiB..128 MiB, the top at 0x8000000; every page above the
// guest's image written and read back.
TEST_P(GuestTest, Memtest_128M_MapCoversRam_PatternHolds) {
  KITE_REQUIRE_KVM();
  ProcessResult r = RunGuest("memtest");
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find(", top 8000000, "), std::string::npos) << r.Describe();
  EXPECT_NE(r.out.find(" pages ok"), std::string::npos) << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(Variants, GuestTest, ::testing::Values("pvh", "lm"));

TEST(KiteRun, SerialToFile_GuestOutputInFileNotStdout) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  ProcessResult r = RunKite({"--kernel", GuestPath("hello", "pvh"), "--memory", "128M", "--serial",
                             "file:" + dir.File("serial.log")});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_EQ(r.out.find("hello: kite guest is alive"), std::string::npos) << r.Describe();
  EXPECT_NE(ReadFile(dir.File("serial.log")).find("hello: kite guest is alive\n"),
            std::string::npos);
}

TEST(KiteRun, SerialNone_NoGuestOutput_StillPowersOff) {
  KITE_REQUIRE_KVM();
  ProcessResult r =
      RunKite({"--kernel", GuestPath("hello", "pvh"), "--memory", "128M", "--serial", "none"});
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_EQ(r.out.find("hello: kite guest is alive"), std::string::npos) << r.Describe();
}

// --on-reboot restart: the guest boots again after its reset (we stop it after the second).
TEST(KiteRun, OnRebootRestart_GuestBootsAgain) {
  KITE_REQUIRE_KVM();
  ProcessOptions o;
  o.stop_when_stdout_contains = "reboot: requesting reset\nreboot: requesting reset\n";
  ProcessResult r = RunKite(
      {"--kernel", GuestPath("reboot", "pvh"), "--memory", "128M", "--on-reboot", "restart"}, o);
  EXPECT_TRUE(r.stopped) << r.Describe();
}

// K1: a kernel that is neither an ELF nor a bzImage is refused before the VM starts.
TEST(KiteRun, K1_RandomBytesKernel_Refused_Status1) {
  KITE_REQUIRE_KVM();
  TempDir dir;
  WriteFile(dir.File("junk"), std::string(4096, '\x5a'));
  ProcessResult r = RunKite({"--kernel", dir.File("junk")});
  EXPECT_EQ(r.exit_status, 1) << r.Describe();
  EXPECT_NE(r.err.find("kite: error:"), std::string::npos) << r.Describe();
}

// K7: a kernel path that is not a regular file is refused, without reading it forever.
TEST(KiteRun, K7_DevZeroKernel_Refused_Status1) {
  KITE_REQUIRE_KVM();
  ProcessOptions o;
  o.timeout = milliseconds(20000);
  ProcessResult r = RunKite({"--kernel", "/dev/zero"}, o);
  EXPECT_FALSE(r.timed_out) << r.Describe();
  EXPECT_EQ(r.exit_status, 1) << r.Describe();
  EXPECT_NE(r.err.find("kite: error:"), std::string::npos) << r.Describe();
}

}  // namespace
}  // namespace kite::testing
