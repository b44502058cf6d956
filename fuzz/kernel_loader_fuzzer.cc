// libFuzzer target for the kernel loaders (src/vmm/boot): the input is a kernel file (in a
// memfd, opened by path like any kernel) that goes through LoadKernel — format detection, the
// ELF header, program headers and PVH note (elf.cc), or the bzImage setup header (bzimage.cc),
// the command line and initrd limits the kernel sets, then loading into a 16 MiB guest and
// writing boot_params or hvm_start_info — and SetupBootCpu for the plan it returns. A kernel
// with a PVH note is loaded a second time through its 64-bit entry. Nothing may crash, hang
// or write outside guest RAM (BAD_INPUTS K1-K7); checks beyond the sanitizers: what a
// successful load reports lies inside guest RAM, and the initrd does not overlap the kernel.
#include <linux/kvm.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/log.h"
#include "vmm/boot/loader.h"
#include "vmm/guest_memory.h"

namespace {

using namespace kite;

constexpr uint64_t kGuestRam = 16 << 20;
constexpr size_t kMaxInput = 1 << 20;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "kernel_loader_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

// A memfd holding `bytes`, named by a path that KernelFile::Open can open (-1 on failure).
int MemfdWith(const uint8_t* bytes, size_t size) {
  int fd = memfd_create("kernel-fuzz", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (size > 0 && write(fd, bytes, size) != static_cast<ssize_t>(size)) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string FdPath(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

struct World {
  GuestMemory memory;
  std::string initrd_path;  // a 64 KiB initrd, so the kernel's initrd limits are used
};

World& TheWorld() {
  static World* world = [] {
    auto memory = GuestMemory::Create(kGuestRam);
    if (!memory) Fail("GuestMemory::Create");
    std::vector<uint8_t> initrd(64 * 1024, 0x5a);
    int fd = MemfdWith(initrd.data(), initrd.size());
    if (fd < 0) Fail("initrd memfd");
    return new World{std::move(*memory), FdPath(fd)};
  }();
  return *world;
}

void CheckPlan(const GuestMemory& memory, const boot::BootPlan& plan) {
  if (plan.kernel_end > memory.end().value) Fail("kernel_end beyond guest RAM");
  if (plan.initrd_size != 0) {
    if (!memory.IsValidRange(plan.initrd_addr, plan.initrd_size)) Fail("initrd outside RAM");
    if (plan.initrd_addr.value < plan.kernel_end) Fail("initrd overlaps the kernel");
  }
  if (!memory.IsValidRange(plan.boot_info, 1)) Fail("boot info outside RAM");
  kvm_regs regs{};
  kvm_sregs sregs{};
  (void)boot::SetupBootCpu(memory, plan, &regs, &sregs);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kite::SetLogLevel(kite::LogLevel::Off);
  (void)TheWorld();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  World& world = TheWorld();
  int fd = MemfdWith(data, size);
  if (fd < 0) return 0;
  boot::KernelSpec spec{.kernel_path = FdPath(fd),
                        .initrd_path = world.initrd_path,
                        .cmdline = "console=ttyS0 reboot=k panic=1",
                        .acpi_rsdp = 0xe0000,
                        .prefer_pvh = true};
  Result<boot::BootPlan> plan = boot::LoadKernel(world.memory, spec);
  if (plan) {
    CheckPlan(world.memory, *plan);
    if (plan->mode == boot::EntryMode::kPvh) {
      spec.prefer_pvh = false;
      Result<boot::BootPlan> linux64 = boot::LoadKernel(world.memory, spec);
      if (!linux64 || linux64->mode != boot::EntryMode::kLinux64) Fail("PVH kernel refused 64-bit");
      CheckPlan(world.memory, *linux64);
    }
  }
  close(fd);
  return 0;
}
