// The Linux guest on a `--transport pci` machine (docs/PCI.md): kite's guest kernel with the
// busy box initramfs runs guest-firmware/linux/tests/pci-virtio, which reports from userspace
// what the guest found on the PCI bus (the host bridge, a virtio-blk, a virtio-net and a
// virtio-rng function bound to virtio-pci, with MSI-X vectors), the virtio drivers bound, the
// virtio interrupts in /proc/interrupts, and does disk I/O, a ping over the user-mode NAT and a
// read of the hardware RNG. The host checks the disk image afterwards.
//
// Userspace needs hardware-backed KVM (the nested VM of scripts/kvm-vm is): on an
// emulated-KVM host (MACHINE.md) the test is skipped. Without kite's guest kernel it is skipped
// too, and fails under CI=true (testing/guest_kernel.h).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "../e2e/linux_guest.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

constexpr size_t kDiskBytes = 4 << 20;
constexpr size_t kMiB = 1 << 20;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The guest's md5sum of `bytes`, computed by the host's md5sum.
std::string Md5(const TempDir& dir, const std::string& bytes) {
  std::string path = dir.File("md5-input");
  WriteFile(path, bytes);
  ProcessOptions o;
  o.argv = {"/usr/bin/md5sum", path};
  Result<ProcessResult> r = RunProcess(o);
  if (!r || r->exit_status != 0) return "md5sum failed";
  return r->out.substr(0, 32);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The disk: 4 KiB of a byte pattern at 0 (the guest reads it), zeros after.
std::string DiskContents() {
  std::string disk(kDiskBytes, '\0');
  for (size_t i = 0; i < 4096; ++i) disk[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return disk;
}

// What the guest writes at 1 MiB: `yes kite-pci-write-0123456789 | head -c 1048576`.
std::string GuestPattern() {
  std::string line = "kite-pci-write-0123456789\n";
  std::string out;
  while (out.size() < kMiB) out += line;
  out.resize(kMiB);
  return out;
}

// The "kite-pci: function ..." line of the PCI function with this vendor and device id.
std::string FunctionLine(const std::string& out, const std::string& vendor_device) {
  std::smatch m;
  std::regex re("kite-pci: function [0-9a-f:.]+ " + vendor_device + "[^\n]*");
  return std::regex_search(out, m, re) ? m.str() : "";
}

class PciGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KITE_REQUIRE_KVM();
    if (!HardwareBackedKvm()) GTEST_SKIP() << "skipped: guest userspace needs hardware-backed KVM";
    kernel_ = FindKernel();
    KITE_REQUIRE_GUEST_KERNEL(kernel_);
    initrd_ = ScriptOutput({"/bin/bash", LinuxDir() + "/build-initramfs.sh"});
    ASSERT_FALSE(initrd_.empty()) << "build-initramfs.sh failed";
  }

  ProcessResult Boot(const std::vector<std::string>& extra) {
    ProcessOptions o;
    o.argv = {KITE_BINARY, "run",       "--kernel",
              kernel_,     "--initrd",  initrd_,
              "--memory",  "256M",      "--serial",
              "stdio",     "--cmdline", "console=ttyS0 reboot=k panic=1 kite.test=pci-virtio"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.timeout = std::chrono::minutes(5);
    Result<ProcessResult> r = RunProcess(o);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
    // KITE_E2E_LOG_DIR=DIR keeps the console and kite's stderr (as the e2e tests do).
    if (const char* logs = std::getenv("KITE_E2E_LOG_DIR"); logs && r) {
      std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
      std::ofstream(std::string(logs) + "/" + name + ".log") << r->out << "\n--- stderr ---\n"
                                                             << r->err;
    }
    return r ? *r : ProcessResult{};
  }

  std::string kernel_;
  std::string initrd_;
  TempDir dir_;
};

TEST_F(PciGuestTest, DiskNetRng_FoundOnPciBus_DriversBound_MsixInterrupts_DiskIoCorrect) {
  std::string disk = dir_.File("disk.raw");
  std::string contents = DiskContents();
  WriteFile(disk, contents);
  ProcessResult r = Boot(
      {"--transport", "pci", "--disk", "path=" + disk + ",format=raw", "--net", "user", "--stats"});
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 0) << "the initramfs powers off" << r.Describe();
  EXPECT_TRUE(Contains(r.out, "kite-guest: test pci-virtio exited")) << r.Describe();

  // The bus: host bridge at 00.0, then the functions in the order disks, nets, rng.
  EXPECT_TRUE(Contains(FunctionLine(r.out, "vendor 0x1b36 device 0x0008"), "class 0x060000"))
      << r.Describe();
  for (const char* id : {"0x1042", "0x1041", "0x1044"}) {  // blk, net, rng
    std::string line = FunctionLine(r.out, std::string("vendor 0x1af4 device ") + id);
    EXPECT_TRUE(Contains(line, "driver virtio-pci")) << id << ": " << line << r.Describe();
    // One vector per queue plus the configuration vector, all requested by the driver.
    EXPECT_TRUE(std::regex_search(line, std::regex("msi_irqs [2-9]"))) << line;
  }
  for (const char* driver : {"driver virtio_blk", "driver virtio_net", "driver virtio_rng"}) {
    EXPECT_TRUE(std::regex_search(r.out, std::regex(std::string("kite-pci: virtio virtio[0-9]+ "
                                                                "device 0x[0-9a-f]+ ") +
                                                    driver + " parent 0000:00:0[0-9a-f]\\.0")))
        << driver << r.Describe();
  }
  // Interrupts: MSI-X, per queue ("virtio0-req.0", "virtio1-input.0", ...), and some fired.
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("kite-pci: interrupt [0-9]+:.*PCI-MSI.*virtio[0-9]+-config")))
      << r.Describe();
  EXPECT_TRUE(std::regex_search(
      r.out,
      std::regex("kite-pci: interrupt [0-9]+: +[1-9][0-9]* .*PCI-MSI.*virtio[0-9]+-req\\.0")))
      << "the disk's request queue vector fired" << r.Describe();

  // Disk: the host's 4 KiB read correctly, 1 MiB written and read back, and on the image.
  EXPECT_TRUE(Contains(r.out, "kite-pci: vda-head " + Md5(dir_, contents.substr(0, 4096))))
      << r.Describe();
  std::string pattern_md5 = Md5(dir_, GuestPattern());
  EXPECT_TRUE(Contains(r.out, "kite-pci: wrote " + pattern_md5)) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "kite-pci: read-back " + pattern_md5)) << r.Describe();
  std::string after = ReadFile(disk);
  ASSERT_EQ(after.size(), kDiskBytes);
  EXPECT_TRUE(after.compare(kMiB, kMiB, GuestPattern()) == 0) << "the image has the guest's write";
  EXPECT_TRUE(after.compare(0, 4096, contents.substr(0, 4096)) == 0);

  EXPECT_TRUE(Contains(r.out, "kite-pci: ping 10.0.2.2 ok")) << r.Describe();
  EXPECT_TRUE(std::regex_search(r.out, std::regex("kite-pci: rng virtio_rng\\.[0-9]+ bytes 16")))
      << r.Describe();
  // No virtio-mmio device was described to this guest.
  EXPECT_FALSE(Contains(r.out, "virtio_mmio")) << r.Describe();
}

// "pci_slots" in the config (what a snapshot records) puts each named device in its slot; the
// others take the lowest slots left.
TEST_F(PciGuestTest, PciSlotsFromConfig_DevicesWhereNamed) {
  std::string disk = dir_.File("disk.raw");
  WriteFile(disk, DiskContents());
  std::string config = dir_.File("vm.json");
  WriteFile(config, R"({"transport": "pci", "pci_slots": {"vda": 7, "rng0": 1}})");
  ProcessResult r =
      Boot({"--config", config, "--disk", "path=" + disk + ",format=raw", "--net", "user"});
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "kite-guest: test pci-virtio exited")) << r.Describe();
  EXPECT_TRUE(Contains(FunctionLine(r.out, "vendor 0x1af4 device 0x1042"), " 0000:00:07.0 "))
      << r.Describe();
  EXPECT_TRUE(Contains(FunctionLine(r.out, "vendor 0x1af4 device 0x1044"), " 0000:00:01.0 "))
      << r.Describe();
  EXPECT_TRUE(Contains(FunctionLine(r.out, "vendor 0x1af4 device 0x1041"), " 0000:00:02.0 "))
      << "net0 takes the lowest slot not named" << r.Describe();
  EXPECT_TRUE(Contains(r.out, "kite-pci: ping 10.0.2.2 ok")) << r.Describe();
}

// A full bus: 29 disks, a NIC and the rng in slots 1-31 (past virtio-mmio's 16 devices), each
// bound to its driver with MSI-X vectors of its own.
TEST_F(PciGuestTest, FullBus_31Devices_AllBoundWithMsix) {
  std::string disk = dir_.File("disk.raw");
  WriteFile(disk, DiskContents());
  std::vector<std::string> args = {"--transport", "pci", "--disk", "path=" + disk + ",format=raw",
                                   "--net",       "user"};
  for (int i = 1; i < 29; ++i) {
    std::string extra = dir_.File("extra" + std::to_string(i) + ".raw");
    WriteFile(extra, std::string(1 << 20, '\0'));
    args.insert(args.end(), {"--disk", "path=" + extra + ",format=raw,readonly=on"});
  }
  ProcessResult r = Boot(args);
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "kite-guest: test pci-virtio exited")) << r.Describe();
  size_t blk = 0, bound = 0;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (Contains(line, "kite-pci: virtio ") && Contains(line, "driver virtio_blk")) ++blk;
    if (Contains(line, "kite-pci: function ") && Contains(line, "vendor 0x1af4") &&
        Contains(line, "driver virtio-pci") && !Contains(line, "msi_irqs 0")) {
      ++bound;
    }
  }
  EXPECT_EQ(blk, 29u) << r.Describe();
  EXPECT_EQ(bound, 31u) << r.Describe();
  EXPECT_TRUE(Contains(FunctionLine(r.out, "vendor 0x1af4 device 0x1044"), " 0000:00:1f.0 "))
      << "the rng in the last slot" << r.Describe();
  EXPECT_TRUE(Contains(r.out, "kite-pci: ping 10.0.2.2 ok")) << r.Describe();
}

}  // namespace
}  // namespace kite::testing
