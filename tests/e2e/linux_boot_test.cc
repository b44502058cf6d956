// Boots the small Linux guest kernel (guest-firmware/linux) under `kite run` and watches its
// serial console. On emulated-KVM hosts userspace cannot run (MACHINE.md), so a boot counts as
// reaching userspace when the kernel prints "Run /init as init process"; where /dev/kvm is
// hardware-backed (vmx/svm in the host's CPU flags) the test also waits for the initramfs'
// marker line. kite is killed as soon as the awaited line appears.
//
// The kernel: kite's own (testing/guest_kernel.h: $KITE_GUEST_KERNEL, else the cached build of
// guest-firmware/linux; skipped without one, failed under CI=true). The initramfs comes from
// guest-firmware/linux/build-initramfs.sh (seconds; cached).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "linux_guest.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"

namespace kite::testing {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kBootTimeout{10 * 60 * 1000};
constexpr char kInitLine[] = "Run /init as init process";
constexpr char kMarkerLine[] = "kite-guest: init started";
// Command-line items that spare the emulated guest work (MACHINE.md).
constexpr char kCmdline[] =
    "console=ttyS0 reboot=k panic=-1 lpj=5000000 tsc=reliable no_timer_check "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd noxsave "
    "clearcpuid=smap,smep,popcnt,rdrand,rdseed,fsgsbase,clflushopt,clwb,rdpid,bmi1,bmi2,adx,"
    "movbe,abm,pku,umip";

class LinuxBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KITE_REQUIRE_KVM();
    kernel_ = FindKernel();
    KITE_REQUIRE_GUEST_KERNEL(kernel_);
    initrd_ = ScriptOutput({"/bin/bash", LinuxDir() + "/build-initramfs.sh"});
    ASSERT_FALSE(initrd_.empty()) << "build-initramfs.sh failed";
  }

  // Boots until the awaited line (or exit, or the timeout) and returns what happened.
  ProcessResult Boot(std::vector<std::string> extra) {
    ProcessOptions o;
    o.argv = {KITE_BINARY, "run",       "--kernel", kernel_,    "--initrd",
              initrd_,     "--cmdline", kCmdline,   "--memory", "128M"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.timeout = kBootTimeout;
    o.stop_when_stdout_contains = HardwareBackedKvm() ? kMarkerLine : kInitLine;
    Result<ProcessResult> r = RunProcess(o);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
    return r ? *r : ProcessResult{};
  }

  std::string kernel_, initrd_;
};

TEST_F(LinuxBootTest, Acpi_OneCpu_ReachesInit_Memory128M) {
  ProcessResult r = Boot({"--cpus", "1"});
  ASSERT_TRUE(r.stopped) << "the guest never reached " << kInitLine << "\n" << r.Describe();
  EXPECT_NE(r.out.find("ACPI: RSDP"), std::string::npos) << "kernel did not find ACPI tables";
  // The GED probes cleanly: its _CRS may hold interrupts only (drivers/acpi/evged.c).
  EXPECT_EQ(r.out.find("acpi-ged"), std::string::npos) << r.Describe();
  // The RTC on the bus is in the tables: rtc-cmos binds to the DSDT's PNP0B00 device (a PNP
  // device name "00:NN"), not to a legacy platform device, and the FADT does not hide it.
  EXPECT_TRUE(std::regex_search(r.out, std::regex("rtc_cmos 00:[0-9a-f]+: registered as rtc0")))
      << r.Describe();
  // "Memory: 101234K/130680K available (...)": the second figure is the RAM the kernel found.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(Memory: (\d+)K/(\d+)K available)")))
      << r.Describe();
  long total_kib = std::stol(m[2]);
  EXPECT_GT(total_kib, 124 * 1024) << m[0];
  EXPECT_LE(total_kib, 128 * 1024) << m[0];
}

TEST_F(LinuxBootTest, NoAcpi_TwoCpus_BothBroughtUp) {
  ProcessResult r = Boot({"--cpus", "2", "--no-acpi"});
  ASSERT_TRUE(r.stopped) << "the guest never reached " << kInitLine << "\n" << r.Describe();
  EXPECT_NE(r.out.find("smp: Brought up 1 node, 2 CPUs"), std::string::npos) << r.Describe();
  EXPECT_EQ(r.out.find("ACPI: RSDP 0x"), std::string::npos) << "ACPI tables with --no-acpi";
}

}  // namespace
}  // namespace kite::testing
