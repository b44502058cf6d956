// The boot CPU state on a real /dev/kvm: a synthetic ELF kernel whose few instructions prove
// the mode they run in (64-bit long mode through kite's page tables and GDT, or 32-bit PVH),
// then report through an OUT to the boot-marker port; and kite's own guest kernel
// (testing/guest_kernel.h) booted to its first PCI probe. Label kvm: skipped without /dev/kvm
// or without that kernel (failed under CI=true).
#include <gtest/gtest.h>
#include <pthread.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "base/units.h"
#include "test_images.h"
#include "testing/guest_kernel.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"
#include "vmm/boot/cpu_setup.h"
#include "vmm/boot/loader.h"
#include "vmm/kvm.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

constexpr uint64_t kCodeAddr = 0x200000;
constexpr uint64_t kMarkerAddr = 0xe00000;  // 14 MiB: the 8th 2 MiB page
constexpr uint32_t kMarker = 0xc0ffee42;

// Code bytes, embedded NULs included.
template <size_t N>
std::string Bytes(const char (&code)[N]) {
  return std::string(code, N - 1);
}

// 64-bit code: in 32-bit mode the REX.W prefixes would be `dec eax` and rax would differ.
const std::string kLongModeCode = Bytes(
    "\x48\xb8\x88\x77\x66\x55\x44\x33\x22\x11"  // mov rax, 0x1122334455667788
    "\x8b\x8e\x02\x02\x00\x00"                  // mov ecx, [rsi + 0x202]  (boot_params "HdrS")
    "\x8b\x1c\x25\x00\x00\xe0\x00"              // mov ebx, [0xe00000]     (through the PDs)
    "\x66\xba\xf0\x03"                          // mov dx, 0x3f0
    "\xee\xf4");                                // out dx, al; hlt

// 32-bit code: 0x4e is `dec esi` here, a REX prefix (no effect on the nop) in 64-bit mode.
const std::string kPvhCode = Bytes(
    "\x31\xf6\x4e\x90"  // xor esi, esi; dec esi; nop  -> esi = 0xffffffff only in 32-bit mode
    "\x8b\x03"          // mov eax, [ebx]  (hvm_start_info.magic)
    "\x66\xba\xf0\x03"  // mov dx, 0x3f0
    "\xee\xf4");        // out dx, al; hlt

struct RunResult {
  kvm_regs regs;
  kvm_sregs sregs;
};

struct TinyVm {
  KvmSystem kvm;
  VmFd vm;
  VcpuFd vcpu;
};

// One vCPU (no irqchip, no devices) on `memory`, in the boot state for `plan`.
Result<TinyVm> StartVm(const GuestMemory& memory, const BootPlan& plan) {
  KvmSystem kvm = TRY(KvmSystem::Open());
  VmFd vm = TRY(kvm.CreateVm());
  TRY(vm.SetTssAddr(0xfeffd000));  // Intel needs it; outside guest RAM
  TRY(vm.MapMemory(memory));
  VcpuFd vcpu = TRY(vm.CreateVcpu(0));
  TRY(vcpu.SetCpuid(TRY(kvm.GetSupportedCpuid())));  // long mode needs CPUID.LM
  kvm_regs regs{};
  kvm_sregs sregs = TRY(vcpu.GetSregs());
  TRY(SetupBootCpu(memory, plan, &regs, &sregs));
  TRY(vcpu.SetSregs(sregs));
  TRY(vcpu.SetRegs(regs));
  return TinyVm{std::move(kvm), std::move(vm), std::move(vcpu)};
}

// Boots `image` on one vCPU until its first exit, which must be the OUT to the marker port.
Result<RunResult> BootAndRun(const std::string& image, bool prefer_pvh) {
  kite::testing::TempDir dir;
  kite::testing::WriteFile(dir.File("kernel"), image);
  GuestMemory memory = TRY(GuestMemory::Create(16 << 20));
  TRY(memory.WriteObj(GuestAddr(kMarkerAddr), kMarker));
  BootPlan plan =
      TRY(LoadKernel(memory, {.kernel_path = dir.File("kernel"), .prefer_pvh = prefer_pvh}));
  TinyVm vm = TRY(StartVm(memory, plan));
  VcpuFd& vcpu = vm.vcpu;
  while (!TRY(vcpu.Run())) {
  }
  const auto* run = reinterpret_cast<const kvm_run*>(vcpu.run_area().data());
  if (run->exit_reason != KVM_EXIT_IO || run->io.port != layout::kBootMarkerPort) {
    kvm_regs r = TRY(vcpu.GetRegs());
    kvm_sregs s = TRY(vcpu.GetSregs());
    return Err("unexpected exit " + std::to_string(run->exit_reason) + " at rip " + ToHex(r.rip) +
               " (cr0 " + ToHex(s.cr0) + " cr2 " + ToHex(s.cr2) + " cr4 " + ToHex(s.cr4) +
               " efer " + ToHex(s.efer) + " cs.l " + std::to_string(s.cs.l) + ")");
  }
  return RunResult{TRY(vcpu.GetRegs()), TRY(vcpu.GetSregs())};
}

TEST(BootKvmTest, Linux64_RunsIn64BitModeWithZeroPageAndIdentityMap) {
  KITE_REQUIRE_KVM();
  testing::ElfOptions options;
  options.entry = kCodeAddr;
  options.segments = {{kCodeAddr, kLongModeCode, 0x1000}};
  Result<RunResult> r = BootAndRun(testing::MakeElf(options), /*prefer_pvh=*/false);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->regs.rax, 0x1122334455667788u);
  EXPECT_EQ(r->regs.rcx, kHdrSMagic);
  EXPECT_EQ(r->regs.rbx, kMarker);
  EXPECT_EQ(r->regs.rsi, layout::kZeroPageAddr);
  EXPECT_EQ(r->sregs.efer & kEferLma, kEferLma);
  EXPECT_EQ(r->sregs.cs.l, 1);
}

TEST(BootKvmTest, Pvh_RunsIn32BitProtectedModeWithStartInfoInEbx) {
  KITE_REQUIRE_KVM();
  testing::ElfOptions options;
  options.entry = kCodeAddr;
  options.pvh_note = true;
  options.pvh_entry = kCodeAddr + 0x10;
  options.segments = {{kCodeAddr, std::string(0x10, '\xf4') + kPvhCode, 0x1000}};
  Result<RunResult> r = BootAndRun(testing::MakeElf(options), /*prefer_pvh=*/true);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->regs.rsi & 0xffffffff, 0xffffffffu);
  EXPECT_EQ(r->regs.rax & 0xffffffff, 0x336ec578u);
  EXPECT_EQ(r->regs.rbx, layout::kPvhStartInfoAddr);
  EXPECT_EQ(r->sregs.cr0 & kCr0Pg, 0u);
  EXPECT_EQ(r->sregs.cs.db, 1);
}

// Kicks a vCPU out of KVM_RUN once `timeout` has passed: immediate_exit plus a signal.
class Watchdog {
 public:
  Watchdog(VcpuFd& vcpu, std::chrono::seconds timeout)
      : thread_([this, &vcpu, timeout] {
          std::unique_lock lock(mutex_);
          if (cv_.wait_for(lock, timeout, [this] { return done_; })) return;
          vcpu.RequestImmediateExit();
          pthread_kill(target_, SIGUSR1);
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  pthread_t target_ = pthread_self();
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Boots kite's guest kernel (vmlinux or bzImage) until it first touches PCI configuration space
// (port 0xcf8, Linux's early_quirks() in setup_arch()): by then it has taken kite's entry state,
// boot_params or start_info, memory map and command line, and built its own page tables. The guest
// gets no devices: port reads return all-ones, MMIO reads zero.
Result<void> BootToPciProbe(const std::string& kernel, bool prefer_pvh) {
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigaction(SIGUSR1, &sa, nullptr);
  GuestMemory memory = TRY(GuestMemory::Create(256 << 20));
  BootPlan plan = TRY(LoadKernel(
      memory, {.kernel_path = kernel, .cmdline = "console=ttyS0", .prefer_pvh = prefer_pvh}));
  TinyVm vm = TRY(StartVm(memory, plan));
  VcpuFd& vcpu = vm.vcpu;
  auto* run = reinterpret_cast<kvm_run*>(vcpu.run_area().data());
  Watchdog watchdog(vcpu, std::chrono::seconds(240));
  for (uint64_t exits = 0;; ++exits) {
    bool exited = TRY(vcpu.Run());
    if (!exited || (run->exit_reason != KVM_EXIT_IO && run->exit_reason != KVM_EXIT_MMIO)) {
      kvm_regs r = TRY(vcpu.GetRegs());
      std::string why = exited ? "exit reason " + std::to_string(run->exit_reason) : "timeout";
      return Err("no PCI probe: " + why + " at rip " + ToHex(r.rip) + " after " +
                 std::to_string(exits) + " exits");
    }
    if (run->exit_reason == KVM_EXIT_MMIO) {
      if (!run->mmio.is_write) std::memset(run->mmio.data, 0, sizeof(run->mmio.data));
      continue;
    }
    if (run->io.port == 0xcf8) return {};
    if (run->io.direction == KVM_EXIT_IO_IN) {
      std::memset(vcpu.run_area().data() + run->io.data_offset, 0xff,
                  uint64_t{run->io.size} * run->io.count);
    }
  }
}

TEST(BootKvmTest, GuestVmlinux_Linux64_ReachesPciProbe) {
  KITE_REQUIRE_KVM();
  const std::string vmlinux = kite::testing::FindGuestKernel();
  KITE_REQUIRE_GUEST_KERNEL(vmlinux);
  Result<void> r = BootToPciProbe(vmlinux, /*prefer_pvh=*/false);
  EXPECT_TRUE(r.has_value()) << r.error().message();
}

TEST(BootKvmTest, GuestVmlinux_Pvh_ReachesPciProbe) {
  KITE_REQUIRE_KVM();
  const std::string vmlinux = kite::testing::FindGuestKernel();
  KITE_REQUIRE_GUEST_KERNEL(vmlinux);
  Result<void> r = BootToPciProbe(vmlinux, /*prefer_pvh=*/true);
  EXPECT_TRUE(r.has_value()) << r.error().message();
}

// True when the host CPU has no vmx/svm flag: its KVM emulates every guest instruction
// (MACHINE.md), ~1000x slower than hardware.
bool KvmIsEmulated() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" vmx") == std::string::npos && line.find(" svm") == std::string::npos;
    }
  }
  return true;
}

TEST(BootKvmTest, GuestBzImage_ReachesPciProbe) {
  KITE_REQUIRE_KVM();
  if (KvmIsEmulated()) {
    GTEST_SKIP() << "KVM emulates every instruction here: decompressing a bzImage takes minutes";
  }
  const std::string bzimage = kite::testing::FindGuestBzImage();
  KITE_REQUIRE_GUEST_KERNEL(bzimage);
  Result<void> r = BootToPciProbe(bzimage, /*prefer_pvh=*/false);
  EXPECT_TRUE(r.has_value()) << r.error().message();
}

}  // namespace
}  // namespace kite::boot
